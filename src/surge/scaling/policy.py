"""The autoscaler policy: metrics in, desired replicas and the reason out. Pure: no clocks, no
I/O; the caller passes `now` and the samples. The algorithm is Kubernetes HPA's (target tracking
`ceil(current * metric / target)` with a tolerance band, the largest proposal wins, stabilization
windows over past recommendations, step limits, min/max), plus scheduled floors (cron) and
scale-to-zero for queue-driven workers. Missing metrics never cause a scale-in. Unlike HPA, a
CPU target also looks at the demand a saturated CPU hides (`demand.py`): requests arriving
and queued, so a spike scales to enough replicas to drain its queue, not just to carry it.

The loop that collects metrics and applies decisions lives elsewhere, never here."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from croniter import croniter

from surge.scaling.demand import DemandEstimate
from surge.scaling.spec import PolicySpec

_SAMPLE_FIELD = {
    "cpu_percent": "cpu_percent",
    "inflight_per_replica": "inflight",
    "p95_latency": "p95_latency",
}


@dataclass(frozen=True, slots=True)
class Sample:
    """One observation taken at `at`. A per-replica sample names its `replica`; a queue-depth
    sample (from the broker) has `replica=None`. Any metric may be missing (None)."""

    at: float
    replica: str | None = None
    cpu_percent: float | None = None
    rss: int | None = None
    inflight: float | None = None
    request_rate: float | None = None
    p95_latency: float | None = None  # seconds
    queue_depth: int | None = None


@dataclass(frozen=True, slots=True)
class ScalingDecision:
    desired: int
    reason: str
    proposals: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)  # the aggregated inputs


class ScalingPolicy:
    """Turns samples into a ScalingDecision once per control period, remembering past
    recommendations for the stabilization windows. One instance per service."""

    def __init__(self, spec: PolicySpec) -> None:
        self.spec = spec
        self._history: deque[tuple[float, int]] = deque()
        self._first_decision = True
        self._demand = DemandEstimate()

    def decide(self, samples: Iterable[Sample], current: int, now: float) -> ScalingDecision:
        spec = self.spec
        fresh = [s for s in samples if now - spec.control_period < s.at <= now]
        metrics = _aggregate(fresh)
        proposals, complete, notes = self._propose(fresh, current, now)
        if not proposals:
            return self._bounded(current, current, now, "no metrics: hold", proposals, metrics)
        raw = max(proposals.values())
        winner = max(proposals, key=lambda n: proposals[n])
        reason = notes[winner]
        if raw < current and not complete:
            raw, reason = current, "metrics missing for some replicas: no scale-in"
        stabilized = self._stabilize(raw, current, now)
        if stabilized != raw:
            window = "scale-down" if raw < current else "scale-up"
            reason = f"{reason}; held at {stabilized} by the {window} window"
        limited = self._limit(stabilized, current)
        if limited != stabilized:
            reason = f"{reason}; step limited to {limited}"
        return self._bounded(limited, current, now, reason, proposals, metrics)

    def schedule_floor(self, now: float) -> tuple[int, str | None]:
        """The floor in force at `now`: the latest schedule entry that fired, else `min`."""
        if not self.spec.schedule:
            return self.spec.min, None
        local = datetime.fromtimestamp(now, self.spec.timezone)
        # croniter's get_prev skips a fire time equal to its start, so start one second on.
        start = local.replace(microsecond=0) + timedelta(seconds=1)
        fired = [(croniter(e.cron, start).get_prev(datetime), e) for e in self.spec.schedule]
        _, entry = max(fired, key=lambda pair: pair[0])
        return max(self.spec.min, entry.min), entry.cron

    def _propose(
        self, samples: list[Sample], current: int, now: float
    ) -> tuple[dict[str, int], bool, dict[str, str]]:
        proposals: dict[str, int] = {}
        notes: dict[str, str] = {}
        complete = True
        for name, target in self.spec.targets.configured().items():
            if name == "queue_depth_per_replica":
                depths = [s for s in samples if s.queue_depth is not None]
                if not depths:
                    complete = False
                    continue
                total = float(max(depths, key=lambda s: s.at).queue_depth or 0)
                proposal = self._queue_proposal(total, target, current)
                value = total
            else:
                values = _per_replica(samples, _SAMPLE_FIELD[name])
                if not values or current == 0:
                    complete = False
                    continue
                reporting = max(current, len(values))
                complete = complete and len(values) >= reporting
                # Replicas without a value count as idle for scale-up (HPA's rule).
                value = sum(values.values()) / reporting
                proposal = self._tracking_proposal(value / target, current)
            proposals[name] = proposal
            notes[name] = f"{name} {value:g} vs target {target:g} -> {proposal}"
            if name == "cpu_percent" and self.spec.demand:
                self._demand_proposal(samples, current, target, now, proposals, notes)
        return proposals, complete, notes

    def _demand_proposal(self, samples: list[Sample], current: int, target: float, now: float,
                         proposals: dict[str, int], notes: dict[str, str]) -> None:
        """Raise the CPU proposal to the cores demand needs (arrivals plus the queue drained
        within one control period) when that is more: a CPU at 100% under-reports it. Only
        while the queue grows faster than the tolerance allows: many requests in flight
        alone are no sign of a shortage (long polls, streams, slow calls to a database)."""
        demand = self._demand.update(
            _per_replica(samples, "cpu_percent"), _per_replica(samples, "request_rate"),
            _per_replica(samples, "inflight"), now)
        if demand is None or demand.arriving <= demand.served * (1 + self.spec.tolerance):
            return  # replicas keep up: the CPU reading shows the demand
        cores = demand.cores(self.spec.control_period)
        needed = self._tracking_proposal(cores * 100 / target / current, current)
        if needed > proposals["cpu_percent"]:
            proposals["cpu_percent"] = needed
            notes["cpu_percent"] = (
                f"cpu demand {cores:.2f} cores ({demand.arriving:.0f} req/s arriving, "
                f"{demand.queued:.0f} queued) vs target {target:g}% -> {needed}")

    def _tracking_proposal(self, ratio: float, current: int) -> int:
        if abs(ratio - 1.0) <= self.spec.tolerance:
            return current
        return math.ceil(current * ratio)

    def _queue_proposal(self, total: float, target: float, current: int) -> int:
        if current and abs(total / (current * target) - 1.0) <= self.spec.tolerance:
            return current
        return math.ceil(total / target)

    def _stabilize(self, raw: int, current: int, now: float) -> int:
        """HPA's behavior stabilization: scale up only to the lowest recommendation of the
        scale-up window, down only to the highest of the scale-down window."""
        up_window = self.spec.scale_up.stabilization
        down_window = self.spec.scale_down.stabilization
        keep = max(up_window, down_window)
        if self._first_decision:
            # A policy that just started has not watched a whole window: until it has, treat
            # the current count as what it recommended, so a restart never scales in at once.
            self._history.append((now, current))
            self._first_decision = False
        while self._history and self._history[0][0] <= now - keep:
            self._history.popleft()
        up = down = raw
        for at, recommendation in self._history:
            if at > now - up_window:
                up = min(up, recommendation)
            if at > now - down_window:
                down = max(down, recommendation)
        self._history.append((now, raw))
        return min(max(current, up), down)

    def _limit(self, desired: int, current: int) -> int:
        if desired > current:
            limit = self.spec.scale_up.max_step.up_limit(current)
            return desired if limit is None else min(desired, limit)
        if desired < current:
            limit = self.spec.scale_down.max_step.down_limit(current)
            return desired if limit is None else max(desired, limit)
        return desired

    def _bounded(
        self, desired: int, current: int, now: float, reason: str,
        proposals: dict[str, int], metrics: dict[str, float],
    ) -> ScalingDecision:
        floor, cron = self.schedule_floor(now)
        if desired < floor:
            desired = floor
            reason = f"{reason}; floor {floor}" + (f" from schedule {cron!r}" if cron else "")
        elif desired > self.spec.max:
            desired, reason = self.spec.max, f"{reason}; capped at max {self.spec.max}"
        if desired == 0 and current > 0:
            reason = f"{reason}; queue empty for the scale-down window: scale to zero"
        return ScalingDecision(desired, reason, proposals, metrics)


def _per_replica(samples: list[Sample], attribute: str) -> dict[str, float]:
    """Each replica's mean of one metric over the samples that carry it."""
    sums: dict[str, list[float]] = {}
    for s in samples:
        value = getattr(s, attribute)
        if s.replica is not None and value is not None:
            sums.setdefault(s.replica, []).append(float(value))
    return {replica: sum(vs) / len(vs) for replica, vs in sums.items()}


def _aggregate(samples: list[Sample]) -> dict[str, float]:
    """The inputs as a decision records them: per-replica means averaged, queue depth latest."""
    out: dict[str, float] = {}
    for attribute in ("cpu_percent", "rss", "inflight", "request_rate", "p95_latency"):
        values = _per_replica(samples, attribute)
        if values:
            out[attribute] = sum(values.values()) / len(values)
    depths = [s for s in samples if s.queue_depth is not None]
    if depths:
        out["queue_depth"] = float(max(depths, key=lambda s: s.at).queue_depth or 0)
    return out
