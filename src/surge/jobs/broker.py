"""The broker interface every backend implements (memory, SQLite, Redis Streams) and
`broker_from_url`, which picks one by URL. Decisions (retry or dead-letter, when) are made by the
worker with the pure helpers in `backoff`; a broker only stores, leases and hands out jobs.

Delivery is at-least-once: `claim` leases a job to a worker until `now + lease`; `extend` renews
the lease while the job runs; a job whose lease ran out is handed out again by the next `claim`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from surge.errors import BrokerError
from surge.jobs.record import JobRecord
from surge.jobs.states import JobState

DEPTH_STATES = (
    JobState.QUEUED, JobState.SCHEDULED, JobState.RUNNING, JobState.RETRYING,
    JobState.UNKNOWN, JobState.DEAD,
)


class Broker(ABC):
    """Durable storage of jobs with leases. All times are UNIX seconds passed in by the caller."""

    url: str
    # how long an idle worker's claim waits for work: a blocking read where the backend has
    # one (new jobs still start at once), else the polling period
    poll_interval: float = 0.05

    @abstractmethod
    async def enqueue(self, record: JobRecord) -> JobRecord:
        """Store a new job. When `record.key` is held by an ACTIVE job, store nothing and return
        that job instead (idempotent enqueue)."""

    @abstractmethod
    async def claim(
        self, queues: Sequence[str], worker: str, limit: int, lease: float, now: float,
        wait: float = 0.0,
    ) -> list[JobRecord]:
        """Up to `limit` due jobs from `queues` (earlier queues first, then oldest), now RUNNING
        under a lease held by `worker`, their `attempts` counted. Includes jobs whose lease
        expired (their worker vanished). When none is due, waits up to `wait` seconds (for new
        jobs, where the backend can, else simply sleeping) and may return an empty list."""

    @abstractmethod
    async def extend(
        self, records: Sequence[JobRecord], worker: str, lease: float, now: float
    ) -> None:
        """Renew the leases of jobs `worker` is still running."""

    @abstractmethod
    async def settle(self, records: Sequence[JobRecord], now: float, ttl: float) -> None:
        """Persist the outcome the worker put on each claimed record: SUCCEEDED, DEAD (kept until
        purged), RETRYING or UNKNOWN (due again at `run_at`), or QUEUED (released). Finished
        jobs are kept `ttl` seconds, then may be forgotten. Releases idempotency keys of jobs
        that are no longer ACTIVE."""

    @abstractmethod
    async def get(self, job_id: str) -> JobRecord | None: ...

    @abstractmethod
    async def cancel(self, job_id: str, now: float) -> bool:
        """Cancel a job that has not started (QUEUED or waiting). True if it was cancelled."""

    @abstractmethod
    async def depth(self, queue: str) -> dict[str, int]:
        """Jobs in `queue` by state, for every state in DEPTH_STATES."""

    @abstractmethod
    async def oldest_age(self, queue: str, now: float) -> float | None:
        """Seconds the oldest QUEUED job of `queue` has waited, None when none waits."""

    @abstractmethod
    async def queues(self) -> list[str]:
        """Names of the queues that have held jobs."""

    @abstractmethod
    async def dead(self, queue: str | None = None, limit: int = 100) -> list[JobRecord]:
        """Dead-lettered jobs, oldest failure first."""

    @abstractmethod
    async def retry_dead(self, job_id: str | None, now: float) -> int:
        """Put one dead job (or all, when `job_id` is None) back as QUEUED with fresh attempts.
        Returns how many moved."""

    @abstractmethod
    async def purge(self, queue: str | None = None) -> int:
        """Delete dead-lettered jobs. Returns how many."""

    @abstractmethod
    async def claim_tick(self, name: str, tick: float) -> bool:
        """True for exactly one caller per (name, tick) across all workers: the cron lock."""

    async def close(self) -> None:  # noqa: B027 - a broker without resources needs nothing
        """Release connections."""


def broker_from_url(url: str) -> Broker:
    """`memory://`, `sqlite:///relative/path.db`, `sqlite:////absolute/path.db`,
    `redis://host:port/db` (also `rediss://`)."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "memory":
        from surge.jobs.memory import MemoryBroker

        return MemoryBroker(url)
    if scheme == "sqlite":
        from surge.jobs.sqlite import SQLiteBroker

        return SQLiteBroker(url)
    if scheme in ("redis", "rediss", "unix"):
        from surge.jobs.redis_streams import RedisBroker

        return RedisBroker(url)
    raise BrokerError(f"unknown broker URL {url!r}: expected memory://, sqlite:///PATH or redis://")
