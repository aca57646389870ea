"""What scaling observes and reports: the per-service event log (the last 100 events, counted
by kind), CPU and memory of a replica's process tree (psutil), a service's request rate and p95
from the gateway's route counters, and the Prometheus collector for replicas and events.
No decisions here (`policy.py`), no process control (`supervisor.py`)."""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from typing import Any

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from surge.observe.metrics import BUCKETS, GatewayStats
from surge.scaling.lifecycle import ProcessState

EVENTS_KEPT = 100


class EventLog:
    """Scaling events of every service: replica lifecycle and scaling decisions that changed
    the count. `now` is wall-clock time (the events are shown to people)."""

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self.now = now
        self.events: dict[str, deque[dict[str, Any]]] = {}
        self.counts: Counter[tuple[str, str]] = Counter()

    def record(self, service: str, kind: str, message: str, **details: Any) -> dict[str, Any]:
        event = {"at": round(self.now(), 3), "kind": kind, "message": message, **details}
        self.events.setdefault(service, deque(maxlen=EVENTS_KEPT)).append(event)
        self.counts[service, kind] += 1
        return event

    def recent(self, service: str) -> list[dict[str, Any]]:
        return list(self.events.get(service, ()))


class ProcessTree:
    """CPU % (of one core, summed over the tree) and RSS of a process and its descendants.
    The first reading of a process only primes psutil's CPU counter: it reports None."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.known: dict[int, psutil.Process] = {}
        self.last: tuple[float | None, int | None] | None = None

    def sample(self) -> tuple[float | None, int | None]:
        try:
            root = psutil.Process(self.pid)
            members = [root, *root.children(recursive=True)]
        except psutil.Error:
            return None, None
        primed = self.pid in self.known
        cpu, rss = 0.0, 0
        seen: dict[int, psutil.Process] = {}
        for member in members:
            proc = self.known.get(member.pid, member)
            try:
                cpu += proc.cpu_percent(None)  # 0.0 at a process's first reading
                rss += proc.memory_info().rss
            except psutil.Error:
                continue
            seen[member.pid] = proc
        self.known = seen
        self.last = (cpu if primed else None), rss
        return self.last


class ServiceTraffic:
    """Request rate and p95 latency of one service over the last interval, from the deltas
    of the gateway's per-route counters (every route that sends to the service)."""

    def __init__(self, stats: GatewayStats, service: str) -> None:
        self.stats = stats
        self.service = service
        self.last: list[int] | None = None
        self.last_at = 0.0

    def sample(self, now: float) -> tuple[float | None, float | None]:
        """(requests per second, p95 seconds) since the previous call; (None, None) on the
        first call, and p95 None when no request finished in between."""
        buckets = [0] * (len(BUCKETS) + 1)
        for (_, service), route in list(self.stats.routes.items()):
            if service == self.service:
                buckets = [a + b for a, b in zip(buckets, route.buckets, strict=True)]
        previous, previous_at = self.last, self.last_at
        self.last, self.last_at = buckets, now
        if previous is None or now <= previous_at:
            return None, None
        delta = [a - b for a, b in zip(buckets, previous, strict=True)]
        total = sum(delta)
        return total / (now - previous_at), (histogram_quantile(delta, 0.95) if total else None)


def histogram_quantile(counts: list[int], q: float) -> float:
    """The q-quantile of a BUCKETS histogram (per-bucket counts, the last one +Inf), linearly
    interpolated inside its bucket as Prometheus' histogram_quantile does."""
    rank = q * sum(counts)
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            if index == len(BUCKETS):
                return BUCKETS[-1]
            low = BUCKETS[index - 1] if index else 0.0
            return low + (BUCKETS[index] - low) * (rank - seen) / count
        seen += count
    return math.nan


class ScalingCollector:
    """`surge_replicas{service,state}`, `surge_scaling_events_total{service,kind}`, the crash
    loop flag and each replica's CPU and RSS, read at scrape time."""

    def __init__(self, supervisor: Any, events: EventLog,
                 usage: Callable[[], dict[tuple[str, str], tuple[float | None, int | None]]]
                 ) -> None:
        self.supervisor = supervisor
        self.events = events
        self.usage = usage

    def collect(self) -> Iterator[Metric]:
        replicas = GaugeMetricFamily("surge_replicas", "Replicas the supervisor runs, by state",
                                     labels=["service", "state"])
        looping = GaugeMetricFamily("surge_replica_crash_loop", "1 while a replica of the "
                                    "service is restarting in a crash loop", labels=["service"])
        for name, group in self.supervisor.groups.items():
            counts = Counter(str(r.state) for r in group.replicas.values())
            for state in ProcessState:
                replicas.add_metric([name, str(state)], counts.get(str(state), 0))
            looping.add_metric([name], int(any(r.crash_looping
                                               for r in group.replicas.values())))
        events = CounterMetricFamily("surge_scaling_events", "Scaling events (replica "
                                     "lifecycle and replica-count changes)",
                                     labels=["service", "kind"])
        for (service, kind), count in sorted(self.events.counts.items()):
            events.add_metric([service, kind], count)
        cpu = GaugeMetricFamily("surge_replica_cpu_percent", "CPU of a replica's process tree, "
                                "percent of one core", labels=["service", "replica"])
        rss = GaugeMetricFamily("surge_replica_rss_bytes", "Resident memory of a replica's "
                                "process tree", labels=["service", "replica"])
        for (service, replica), (percent, resident) in sorted(self.usage().items()):
            if percent is not None:
                cpu.add_metric([service, replica], percent)
            if resident is not None:
                rss.add_metric([service, replica], resident)
        yield from (replicas, looping, events, cpu, rss)
