"""Passive outlier detection for one service (pure, `now` passed in): live-traffic failures
eject an upstream for a while, and each repeated ejection lasts longer.

Per upstream: `active --consecutive_failures in a row--> ejected --restore()--> active`.
- An ejection lasts `ejection * n` seconds, n being that upstream's ejection multiplier (its
  ejections so far, this one included), capped at `max_ejection`.
- An ejection that would take the ejected share above `max_ejected_percent` of the service's
  upstreams is refused and counted in `refused`; the failure streak is kept, so the next failure
  tries again (and succeeds once another upstream has come back).
- `forgive()` decays the multiplier by one. The caller calls it once per `ejection` interval
  that a returned upstream spends without being ejected again (Envoy's decay, simplified), so a
  flapping upstream stays out longer and longer while a recovered one earns its way back.
The detector never touches `Upstream`: the caller sets `upstream.ejected` from the answers
and rebuilds the eligible set. Results for upstreams it does not know, or that are already
ejected (requests still in flight when it was ejected), are ignored."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from surge.errors import IllegalTransition
from surge.upstreams.upstream import Upstream


@dataclass(frozen=True, slots=True)
class Ejection:
    upstream: Upstream
    until: float
    seconds: float
    multiplier: int


class _Record:
    __slots__ = ("failures", "multiplier")

    def __init__(self) -> None:
        self.failures = 0
        self.multiplier = 0


class OutlierDetector:
    __slots__ = (
        "consecutive_failures", "ejection", "max_ejected_percent", "max_ejection",
        "_records", "_ejected", "ejections", "refused",
    )

    def __init__(
        self, consecutive_failures: int, ejection: float, max_ejected_percent: float,
        max_ejection: float = 300.0,
    ) -> None:
        if consecutive_failures < 1:
            raise ValueError("consecutive_failures must be at least 1")
        self.consecutive_failures = consecutive_failures
        self.ejection = ejection
        self.max_ejected_percent = max_ejected_percent
        self.max_ejection = max_ejection
        self._records: dict[Upstream, _Record] = {}
        self._ejected: dict[Upstream, float] = {}  # ejected upstream -> until
        self.ejections = 0  # ejections made, for a metric
        self.refused = 0  # ejections refused by max_ejected_percent, for a metric

    def update(self, upstreams: Sequence[Upstream]) -> None:
        """The service's whole upstream set (eligible or not) changed: new ones start clean,
        removed ones are forgotten, the rest keep their streaks and multipliers."""
        old = self._records
        self._records = {u: old.get(u) or _Record() for u in upstreams}
        self._ejected = {u: t for u, t in self._ejected.items() if u in self._records}

    def record(self, upstream: Upstream, ok: bool, now: float) -> Ejection | None:
        """One request's outcome (ok=False for a connect failure, a reset or a 5xx); the
        ejection it triggers, if any."""
        rec = self._records.get(upstream)
        if rec is None or upstream in self._ejected:
            return None
        if ok:
            rec.failures = 0
            return None
        rec.failures += 1
        if rec.failures < self.consecutive_failures:
            return None
        if (len(self._ejected) + 1) * 100 > self.max_ejected_percent * len(self._records):
            self.refused += 1
            return None
        rec.failures = 0
        rec.multiplier += 1
        seconds = min(self.ejection * rec.multiplier, self.max_ejection)
        self._ejected[upstream] = now + seconds
        self.ejections += 1
        return Ejection(upstream, now + seconds, seconds, rec.multiplier)

    def due(self, now: float) -> list[Upstream]:
        """Ejected upstreams whose time is up: the caller restores each once it passes an
        active health check (at once when the service has none). Still counted as ejected."""
        return [u for u, until in self._ejected.items() if until <= now]

    def restore(self, upstream: Upstream) -> None:
        """An ejected upstream takes traffic again, with a clean failure streak."""
        if self._ejected.pop(upstream, None) is None:
            raise IllegalTransition(f"{upstream.address} is not ejected")
        self._records[upstream].failures = 0

    def forgive(self, upstream: Upstream) -> None:
        """One clean interval since its return: its next ejection will be one step shorter."""
        rec = self._records.get(upstream)
        if rec is None or upstream in self._ejected:
            raise IllegalTransition(f"{upstream.address} is ejected or unknown; cannot forgive")
        if rec.multiplier > 0:
            rec.multiplier -= 1

    def is_ejected(self, upstream: Upstream) -> bool:
        return upstream in self._ejected

    def multiplier(self, upstream: Upstream) -> int:
        """That upstream's ejections not yet forgiven (0 for an unknown one)."""
        rec = self._records.get(upstream)
        return rec.multiplier if rec else 0

    @property
    def ejected_count(self) -> int:
        return len(self._ejected)
