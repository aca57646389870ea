"""Prometheus metrics of background jobs, on the default registry, and `observe_queues`, which
refreshes the depth gauges from a broker. Names follow `surge_jobs_*`."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

from surge.jobs.broker import Broker

JOBS = Counter(
    "surge_jobs", "Jobs by outcome: succeeded, retried, dead, unknown, released, timeout",
    ["queue", "outcome"],
)
RUN_SECONDS = Histogram(
    "surge_job_run_seconds", "Time a job ran, whatever its outcome", ["queue"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600),
)
DEPTH = Gauge("surge_jobs_depth", "Jobs in a queue by state", ["queue", "state"])
OLDEST_AGE = Gauge(
    "surge_jobs_oldest_age_seconds", "How long the oldest queued job has waited", ["queue"]
)
QUEUE_GAUGES = (DEPTH, OLDEST_AGE)  # what a master of `workers: N` exports itself
BROKER_ERRORS = Counter("surge_jobs_broker_errors", "Broker calls that failed", ["operation"])


async def observe_queues(broker: Broker, queues: Iterable[str], now: float) -> dict[str, dict]:
    """Refresh the depth and age gauges; returns {queue: {"depth": {...}, "oldest_age": s}}."""
    seen: dict[str, dict] = {}
    for queue in queues:
        depth = await broker.depth(queue)
        age = await broker.oldest_age(queue, now)
        for state, count in depth.items():
            DEPTH.labels(queue, state).set(count)
        OLDEST_AGE.labels(queue).set(age or 0.0)
        seen[queue] = {"depth": depth, "oldest_age": age}
    return seen
