"""The demand a saturated CPU metric hides (pure: readings and `now` in, an estimate out).

A replica's CPU stops at 100% of what it can use, so once load passes its capacity the CPU
ratio says "1.4x the target" however far demand has gone, and requests queue up. HPA's plain
ratio then scales to a count that serves the new rate but never drains the queue built while
it was short. What the gateway sees is not capped: requests answered per second, requests in
flight (those beyond the ones being served are queued), and how fast that queue grows (the
arrivals the replicas did not keep up with). With the CPU each answered request cost, that is
the demand in cores: arrivals, plus the queue drained within a horizon. No decision here: the
policy turns cores into replicas against its CPU target."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Demand:
    served: float  # requests answered per second
    arriving: float  # requests arriving per second: answered plus the queue's growth
    queued: float  # requests waiting beyond those being served
    cost: float  # CPU seconds (of one core) per answered request

    def cores(self, horizon: float) -> float:
        """Cores needed to serve the arrivals and drain the queue within `horizon` seconds."""
        return (self.arriving + self.queued / horizon) * self.cost


class DemandEstimate:
    """One service's estimate across control periods: it remembers the last queue length to
    tell how fast the queue grows."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: tuple[float, float] | None = None  # (when, queued)

    def update(self, cpu: dict[str, float], rate: dict[str, float],
               inflight: dict[str, float], now: float) -> Demand | None:
        """Per-replica CPU %, answers/s and requests in flight; None without a replica that
        reports all three and answered something (nothing to price a request with)."""
        replicas = cpu.keys() & rate.keys() & inflight.keys()
        served = sum(rate[r] for r in replicas)
        busy = sum(cpu[r] for r in replicas) / 100  # cores, i.e. requests being served
        if served <= 0 or busy <= 0:
            # Nothing to price a request with. An idle service's queue is known, though: empty,
            # so the first busy reading after it counts its whole queue as growth.
            idle = bool(replicas) and not any(inflight[r] for r in replicas)
            self._last = (now, 0.0) if idle else None
            return None
        queued = max(0.0, sum(inflight[r] for r in replicas) - busy)
        growth = 0.0
        if self._last is not None and now > self._last[0]:
            growth = max(0.0, (queued - self._last[1]) / (now - self._last[0]))
        self._last = (now, queued)
        return Demand(served, served + growth, queued, busy / served)
