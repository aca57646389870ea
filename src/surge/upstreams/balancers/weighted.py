"""Smooth weighted round robin, exactly as nginx does it: every pick adds each upstream's
weight to its running score, takes the highest (first in order on a tie) and subtracts the total
from the winner. Weights 5, 1, 1 give `a a b a c a a`: interleaved, never bursts.

With static weights the sequence repeats with period sum(weights / gcd), so `update()` plays it
once into a schedule and a pick is one index step. While an upstream is slow-starting the weights
change with `now`, so picks run nginx's loop over `weight_at(now)` until the last ramp ends."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from surge.upstreams.balancers.base import Balancer
from surge.upstreams.balancers.candidates import NO_RAMP, ramp_end, reduced, usable
from surge.upstreams.upstream import Upstream

# Longest schedule precomputed (one list slot per entry); beyond it picks run the live loop.
MAX_SCHEDULE = 1 << 16


def smooth_sequence(weights: Sequence[int]) -> list[int]:
    """One period (sum(weights) picks) of nginx's smooth weighted round robin, as indices."""
    total = sum(weights)
    current = [0] * len(weights)
    order = []
    for _ in range(total):
        best = 0
        for i, w in enumerate(weights):
            current[i] += w
            if current[i] > current[best]:
                best = i
        current[best] -= total
        order.append(best)
    return order


class WeightedBalancer(Balancer):
    __slots__ = ("_upstreams", "_schedule", "_pos", "_current", "_ramp_end")

    def __init__(self) -> None:
        self._upstreams: list[Upstream] = []
        self._schedule: list[Upstream] = []
        self._pos = 0
        self._current: list[float] = []
        self._ramp_end = NO_RAMP

    def update(self, upstreams: Sequence[Upstream]) -> None:
        ups = usable(upstreams)
        self._upstreams = ups
        self._current = [0.0] * len(ups)
        self._ramp_end = ramp_end(ups)
        self._pos = 0
        self._schedule = []
        weights = reduced([u.weight for u in ups])
        if ups and sum(weights) <= MAX_SCHEDULE:
            self._schedule = [ups[i] for i in smooth_sequence(weights)]

    def pick(
        self, now: float, key: str | None = None, exclude: Collection[Upstream] = ()
    ) -> Upstream | None:
        schedule = self._schedule
        if not schedule or now < self._ramp_end:
            return self._pick_live(now, exclude)
        n = len(schedule)
        pos = self._pos
        # Every upstream appears in each period, so one period always finds an allowed one.
        for _ in range(n):
            u = schedule[pos]
            pos += 1
            if pos == n:
                pos = 0
            if not exclude or u not in exclude:
                self._pos = pos
                return u
        return None

    def _pick_live(self, now: float, exclude: Collection[Upstream]) -> Upstream | None:
        """nginx's loop itself; excluded upstreams neither gain score nor count in the total,
        as nginx skips peers this request already tried."""
        ramping = now < self._ramp_end
        current = self._current
        best = -1
        total = 0.0
        for i, u in enumerate(self._upstreams):
            if exclude and u in exclude:
                continue
            w = u.weight_at(now) if ramping else u.weight
            current[i] += w
            total += w
            if best < 0 or current[i] > current[best]:
                best = i
        if best < 0:
            return None
        current[best] -= total
        return self._upstreams[best]
