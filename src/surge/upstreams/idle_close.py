"""When an upstream closes idle keep-alive connections, as far as its pool can tell: the pure
estimate behind safe reuse (HAProxy's `http-reuse safe`). No I/O and no clock: the pool passes
`now` and what it saw.

A request that cannot be replayed (a POST without `Idempotency-Key`) must not be sent on a
connection the upstream is closing at that very moment: a close before any answer looks the
same whether the upstream never read the request or read it and died, so it cannot be retried.
Such a request takes a pooled connection only if it was used within `reuse_within` seconds;
otherwise a new one. `reuse_within` is the upstream's idle close less a safety margin of
max(1 s, 20%), the close being:
- advertised: `Keep-Alive: timeout=N` on its responses (Apache, some Node servers);
- observed: the shortest idle time at which it closed one of the pool's connections (uvicorn,
  gunicorn and most others never say). The observed time is never shorter than the real one
  (the close is noticed after it happens), and the margin covers what it may overshoot by;
- unknown: connections used within `UNKNOWN_REUSE` only.

An observation is trusted for `RELEARN_AFTER` seconds. A restart closes idle connections at
whatever age they have, which reads as a far too short timeout: past that time the figure still
bounds reuse (erring short is safe) but the sweeper lets connections stay until the upstream
closes them again, and that next close starts a new round."""

from __future__ import annotations

from typing import Final

NEVER: Final = float("inf")
# Before anything is known: below the shortest common default (gunicorn's 2 s keep-alive; uvicorn,
# Node and Apache use 5 s), so an unknown upstream is not raced before its first close is seen.
UNKNOWN_REUSE: Final = 1.0
MARGIN_FLOOR: Final = 1.0   # seconds: covers a busy event loop noticing a close late
MARGIN_SHARE: Final = 0.2   # of the close time: covers timer slack on the upstream's side
RELEARN_AFTER: Final = 60.0


def margin(closes_after: float) -> float:
    """The safety margin taken off an upstream's idle close."""
    return max(MARGIN_FLOOR, MARGIN_SHARE * closes_after)


class IdleClose:
    """One upstream's idle close: what was advertised and observed, and what follows for reuse
    (`reuse_within`) and for the sweeper (`review`)."""

    __slots__ = ("advertised", "observed", "observed_at", "reuse_within")

    def __init__(self) -> None:
        self.advertised = NEVER  # the last `Keep-Alive: timeout=` seen
        self.observed = NEVER    # the shortest idle close seen in this round
        self.observed_at = 0.0
        self.reuse_within = UNKNOWN_REUSE

    def advertise(self, timeout: float) -> None:
        """A response said `Keep-Alive: timeout=<timeout>`."""
        self.advertised = timeout
        self._settle()

    def closed_idle(self, idle_for: float, now: float) -> None:
        """The upstream closed a connection of the pool that had been idle for `idle_for`."""
        if self.stale(now):
            self.observed = idle_for  # a new round: the old figure may have been a restart
        else:
            self.observed = min(self.observed, idle_for)
        self.observed_at = now
        self._settle()

    def stale(self, now: float) -> bool:
        return self.observed < NEVER and now - self.observed_at > RELEARN_AFTER

    def review(self, now: float, idle_timeout: float) -> float:
        """How long a pooled connection may stay idle before the gateway closes it (at most
        `idle_timeout`, the gateway's own limit); called by the sweeper, which also ages the
        estimate here."""
        if self.stale(now):
            if self.advertised == NEVER:
                return idle_timeout  # let the upstream show when it closes
            self.observed = NEVER  # the advertised figure stands again
            self._settle()
        if self.advertised == NEVER and self.observed == NEVER:
            return idle_timeout
        return max(0.0, min(idle_timeout, self.reuse_within))

    def _settle(self) -> None:
        closes = min(self.advertised, self.observed)
        self.reuse_within = UNKNOWN_REUSE if closes == NEVER else closes - margin(closes)

    def __repr__(self) -> str:
        return (f"<IdleClose advertised={self.advertised:g} observed={self.observed:g} "
                f"reuse_within={self.reuse_within:g}>")
