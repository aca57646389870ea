"""In-process broker: the reference implementation of the `Broker` contract, for tests and
single-process apps. Nothing survives the process; use SQLite or Redis for durability."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Sequence

from surge.jobs.broker import DEPTH_STATES, Broker
from surge.jobs.record import JobRecord
from surge.jobs.states import ACTIVE, WAITING, JobState


class MemoryBroker(Broker):
    poll_interval = 0.01

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._jobs: dict[str, JobRecord] = {}
        self._leases: dict[str, tuple[str, float]] = {}   # job id -> (worker, expiry)
        self._expiry: dict[str, float] = {}
        self._ticks: set[tuple[str, float]] = set()

    async def enqueue(self, record: JobRecord) -> JobRecord:
        if record.key is not None:
            for job in self._jobs.values():
                if job.key == record.key and job.state in ACTIVE:
                    return copy.copy(job)
        self._jobs[record.id] = copy.copy(record)
        return record

    async def claim(
        self, queues: Sequence[str], worker: str, limit: int, lease: float, now: float,
        wait: float = 0.0,
    ) -> list[JobRecord]:
        self._forget_expired(now)
        due = [job for job in self._jobs.values() if job.queue in queues and self._due(job, now)]
        order = {queue: i for i, queue in enumerate(queues)}
        due.sort(key=lambda job: (order[job.queue], job.run_at, job.created_at))
        claimed = []
        for job in due[:limit]:
            job.state, job.worker, job.started_at = JobState.RUNNING, worker, now
            job.attempts += 1
            self._leases[job.id] = (worker, now + lease)
            claimed.append(copy.copy(job))
        if not claimed and wait > 0:
            await asyncio.sleep(wait)
        return claimed

    def _due(self, job: JobRecord, now: float) -> bool:
        if job.state == JobState.RUNNING:
            return self._leases.get(job.id, ("", 0.0))[1] < now
        return job.state == JobState.QUEUED or (job.state in WAITING and job.run_at <= now)

    async def extend(
        self, records: Sequence[JobRecord], worker: str, lease: float, now: float
    ) -> None:
        for record in records:
            if self._leases.get(record.id, ("", 0.0))[0] == worker:
                self._leases[record.id] = (worker, now + lease)

    async def settle(self, records: Sequence[JobRecord], now: float, ttl: float) -> None:
        for record in records:
            self._leases.pop(record.id, None)
            self._jobs[record.id] = copy.copy(record)
            if record.state not in ACTIVE and record.state != JobState.DEAD:
                self._expiry[record.id] = now + ttl

    def _forget_expired(self, now: float) -> None:
        for job_id in [i for i, at in self._expiry.items() if at <= now]:
            self._jobs.pop(job_id, None)
            del self._expiry[job_id]

    async def get(self, job_id: str) -> JobRecord | None:
        job = self._jobs.get(job_id)
        return copy.copy(job) if job else None

    async def cancel(self, job_id: str, now: float) -> bool:
        job = self._jobs.get(job_id)
        if job is None or job.state not in WAITING | {JobState.QUEUED}:
            return False
        job.state, job.finished_at = JobState.CANCELLED, now
        return True

    async def depth(self, queue: str) -> dict[str, int]:
        counts = {str(state): 0 for state in DEPTH_STATES}
        for job in self._jobs.values():
            if job.queue == queue and str(job.state) in counts:
                counts[str(job.state)] += 1
        return counts

    async def oldest_age(self, queue: str, now: float) -> float | None:
        waiting = [
            job.run_at for job in self._jobs.values()
            if job.queue == queue and job.state == JobState.QUEUED
        ]
        return max(0.0, now - min(waiting)) if waiting else None

    async def queues(self) -> list[str]:
        return sorted({job.queue for job in self._jobs.values()})

    async def dead(self, queue: str | None = None, limit: int = 100) -> list[JobRecord]:
        found = [
            copy.copy(job) for job in self._jobs.values()
            if job.state == JobState.DEAD and queue in (None, job.queue)
        ]
        return sorted(found, key=lambda job: job.finished_at or 0.0)[:limit]

    async def retry_dead(self, job_id: str | None, now: float) -> int:
        moved = 0
        for job in self._jobs.values():
            if job.state == JobState.DEAD and job_id in (None, job.id):
                job.state, job.attempts, job.run_at, job.key = JobState.QUEUED, 0, now, None
                moved += 1
        return moved

    async def purge(self, queue: str | None = None) -> int:
        doomed = [job.id for job in await self.dead(queue, limit=len(self._jobs))]
        for job_id in doomed:
            del self._jobs[job_id]
        return len(doomed)

    async def claim_tick(self, name: str, tick: float) -> bool:
        if (name, tick) in self._ticks:
            return False
        self._ticks.add((name, tick))
        return True
