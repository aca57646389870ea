"""Redis Streams broker: the distributed default. One stream per queue read by the consumer
group `workers` (XREADGROUP), a job's record in a hash, delayed jobs (scheduled, retrying,
unknown) in sorted sets moved onto the stream by a Lua script when due, dead letters in a
sorted set, idempotency keys as plain keys set only when free (in the enqueue script).

The lease of a running job is its stream entry's idle time in the group's pending list: a
worker renews it with XCLAIM (JUSTID) while the job runs; an entry idle longer than the lease
is taken over with XAUTOCLAIM by any worker, so a vanished worker's jobs run again promptly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from surge.errors import BrokerError
from surge.jobs import redis_scripts
from surge.jobs.broker import DEPTH_STATES, Broker
from surge.jobs.record import JobRecord
from surge.jobs.states import JobState

GROUP = "workers"
# A job hash holds `spec`, the JSON of what never changes after enqueue, plus one field per
# value that does (what scripts read and write).
SPEC = ("name", "queue", "args", "kwargs", "id", "retries", "backoff", "max_backoff", "timeout",
        "created_at")
MUTABLE = ("state", "key", "attempts", "run_at", "started_at", "finished_at", "worker",
           "result", "error", "traceback", "delivery")
_WAITING = (JobState.SCHEDULED, JobState.RETRYING, JobState.UNKNOWN)
_SWEEP_EVERY = 0.05   # seconds between moves of due jobs / takeovers of expired leases
_MOVE_BATCH = 500
_TICK_TTL = 7 * 86400
_MAX_CONNECTIONS = 64


class Keys:
    """Every key this broker touches, in one place."""

    def __init__(self, prefix: str = "surge:jobs:") -> None:
        self.prefix = prefix
        self.job_prefix = prefix + "job:"
        self.queues = prefix + "queues"

    def job(self, job_id: str) -> str:
        return self.job_prefix + job_id

    def stream(self, queue: str) -> str:
        return f"{self.prefix}stream:{queue}"

    def waiting(self, queue: str, state: str) -> str:
        return f"{self.prefix}{state}:{queue}"

    def dead(self, queue: str) -> str:
        return f"{self.prefix}dead:{queue}"

    def key(self, key: str) -> str:
        return f"{self.prefix}key:{key}"

    def tick(self, name: str, tick: float) -> str:
        return f"{self.prefix}tick:{name}:{tick:.3f}"


class RedisBroker(Broker):
    poll_interval = 0.25   # a blocking read: new jobs start at once, delayed ones within this

    def __init__(self, url: str, *, prefix: str = "surge:jobs:", timeout: float = 5.0) -> None:
        self.url = url
        self.keys = Keys(prefix)
        # a plain pool (cheaper per command than a blocking one) that `_slots` keeps from
        # running out: a burst of enqueues waits for a free connection instead of failing
        pool = aioredis.ConnectionPool.from_url(
            url, decode_responses=True, socket_connect_timeout=min(timeout, 2.0),
            socket_timeout=timeout + 1.0, max_connections=_MAX_CONNECTIONS,
        )
        self._slots = asyncio.Semaphore(_MAX_CONNECTIONS)
        self.redis: Any = aioredis.Redis.from_pool(pool)
        self._enqueue = self.redis.register_script(redis_scripts.ENQUEUE)
        self._move_due = self.redis.register_script(redis_scripts.MOVE_DUE)
        self._take = self.redis.register_script(redis_scripts.TAKE)
        self._cancel = self.redis.register_script(redis_scripts.CANCEL)
        self._retry_dead = self.redis.register_script(redis_scripts.RETRY_DEAD)
        self._settle_succeeded = self.redis.register_script(redis_scripts.SETTLE_SUCCEEDED)
        self._groups: set[str] = set()
        self._consumers: set[tuple[str, str]] = set()   # (queue, worker) this broker read as
        self._next_sweep = 0.0

    @contextlib.asynccontextmanager
    async def _translated(self, what: str) -> AsyncIterator[None]:
        try:
            async with self._slots:
                yield
        except (RedisError, OSError) as exc:
            raise BrokerError(f"Redis broker at {self.url}: {what} failed: {exc}") from exc

    async def close(self) -> None:
        """Also removes this process's consumers from the groups when they hold no entries,
        so a fleet of short-lived workers does not leave a trail of them."""
        with contextlib.suppress(RedisError, OSError):
            for queue, worker in self._consumers:
                stream = self.keys.stream(queue)
                for consumer in await self.redis.xinfo_consumers(stream, GROUP):
                    if consumer["name"] == worker and consumer["pending"] == 0:
                        await self.redis.xgroup_delconsumer(stream, GROUP, worker)
        await self.redis.aclose()

    # -- producing ---------------------------------------------------------------------------

    async def enqueue(self, record: JobRecord) -> JobRecord:
        k = self.keys
        fields = record.to_fields(MUTABLE)
        fields["spec"] = json.dumps({name: getattr(record, name) for name in SPEC})
        flat = [item for pair in fields.items() for item in pair]
        key = k.key(record.key) if record.key is not None else k.job(record.id)
        async with self._translated("enqueue"):
            found = await self._enqueue(
                keys=[k.job(record.id), k.stream(record.queue),
                      k.waiting(record.queue, JobState.SCHEDULED), key, k.queues],
                args=[record.id, str(record.state), record.run_at, record.queue,
                      "1" if record.key is not None else "0", *flat],
            )
        return _from_flat(found) if found else record

    # -- consuming ---------------------------------------------------------------------------

    async def claim(
        self, queues: Sequence[str], worker: str, limit: int, lease: float, now: float,
        wait: float = 0.0,
    ) -> list[JobRecord]:
        async with self._translated("claim"):
            await self._ensure_groups(queues)
            self._consumers.update((queue, worker) for queue in queues)
            taken: list[JobRecord] = []
            swept = time.monotonic() >= self._next_sweep
            if swept:
                taken += await self._sweep(queues, worker, limit, lease, now)
            if len(taken) < limit:
                taken += await self._read(queues, worker, limit - len(taken), now, None)
            if not taken and not swept:
                taken += await self._sweep(queues, worker, limit, lease, now)
            if not taken and wait > 0:
                taken += await self._read(queues, worker, limit, now, int(wait * 1000) or 1)
            return taken

    async def _sweep(
        self, queues: Sequence[str], worker: str, limit: int, lease: float, now: float
    ) -> list[JobRecord]:
        """Housekeeping, at most every _SWEEP_EVERY while busy and before any blocking read:
        move due delayed jobs onto their streams, take over expired leases."""
        self._next_sweep = time.monotonic() + _SWEEP_EVERY
        taken: list[JobRecord] = []
        for queue in queues:
            await self._move_due(keys=[self.keys.stream(queue), *self._waiting(queue)],
                                 args=[now, self.keys.job_prefix, _MOVE_BATCH])
            taken += await self._take_over(queue, worker, limit - len(taken), lease, now)
        return taken

    async def _ensure_groups(self, queues: Sequence[str]) -> None:
        for queue in queues:
            if queue in self._groups:
                continue
            with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists
                await self.redis.xgroup_create(self.keys.stream(queue), GROUP, "0", mkstream=True)
            self._groups.add(queue)

    async def _take_over(
        self, queue: str, worker: str, limit: int, lease: float, now: float
    ) -> list[JobRecord]:
        """Entries whose worker stopped renewing them for longer than the lease."""
        if limit <= 0:
            return []
        reply = await self.redis.xautoclaim(
            self.keys.stream(queue), GROUP, worker, int(lease * 1000), "0-0", count=limit
        )
        return await self._mark(queue, worker, reply[1], now)

    async def _read(
        self, queues: Sequence[str], worker: str, limit: int, now: float, block: int | None
    ) -> list[JobRecord]:
        """New entries, earlier queues first. A read over several streams may return `count`
        entries from each, so one that blocks on several queues asks for one entry each."""
        if len(queues) > 1 and block is None:
            for queue in queues:
                reply = await self.redis.xreadgroup(
                    GROUP, worker, {self.keys.stream(queue): ">"}, count=limit
                )
                if reply:
                    return await self._mark(queue, worker, reply[0][1], now)
            return []
        streams = {self.keys.stream(q): ">" for q in queues}
        count = limit if len(queues) == 1 else 1
        reply = await self.redis.xreadgroup(GROUP, worker, streams, count=count, block=block)
        taken: list[JobRecord] = []
        for stream, entries in reply or ():
            queue = next(q for q in queues if self.keys.stream(q) == stream)
            taken += await self._mark(queue, worker, entries, now)
        return taken

    async def _mark(
        self, queue: str, worker: str, entries: list, now: float
    ) -> list[JobRecord]:
        if not entries:
            return []
        pairs = [item for entry_id, data in entries for item in (entry_id, data["id"])]
        rows = await self._take(keys=[self.keys.stream(queue)],
                                args=[GROUP, worker, now, self.keys.job_prefix, *pairs])
        return [_from_flat(row) for row in rows]

    def _waiting(self, queue: str) -> list[str]:
        return [self.keys.waiting(queue, state) for state in _WAITING]

    async def extend(
        self, records: Sequence[JobRecord], worker: str, lease: float, now: float
    ) -> None:
        by_queue: dict[str, list[str]] = {}
        for record in records:
            if record.delivery:
                by_queue.setdefault(record.queue, []).append(record.delivery)
        async with self._translated("extend"):
            for queue, entries in by_queue.items():
                await self.redis.xclaim(self.keys.stream(queue), GROUP, worker, 0, entries,
                                        justid=True)

    async def settle(self, records: Sequence[JobRecord], now: float, ttl: float) -> None:
        succeeded: dict[str, list] = {}
        others = []
        for r in records:
            if r.state == JobState.SUCCEEDED and r.delivery:
                succeeded.setdefault(r.queue, []).extend(
                    (r.id, r.delivery, r.finished_at or now, json.dumps(r.result))
                )
            else:
                others.append(r)
        async with self._translated("settle"):
            for queue, args in succeeded.items():
                await self._settle_succeeded(
                    keys=[self.keys.stream(queue)],
                    args=[GROUP, max(1, int(ttl)), self.keys.prefix, *args],
                )
            if others:
                await self._settle_others(others, now, ttl)

    async def _settle_others(self, records: Sequence[JobRecord], now: float, ttl: float) -> None:
        k = self.keys
        async with self.redis.pipeline(transaction=True) as pipe:
            for r in records:
                job, stream = k.job(r.id), k.stream(r.queue)
                pipe.hset(job, mapping=r.to_fields(MUTABLE))
                if r.delivery:
                    pipe.xack(stream, GROUP, r.delivery)
                    pipe.xdel(stream, r.delivery)
                if r.state in (JobState.SUCCEEDED, JobState.CANCELLED):
                    pipe.expire(job, max(1, int(ttl)))
                elif r.state in _WAITING:
                    pipe.zadd(k.waiting(r.queue, r.state), {r.id: r.run_at})
                elif r.state == JobState.DEAD:
                    pipe.zadd(k.dead(r.queue), {r.id: r.finished_at or now})
                elif r.state == JobState.QUEUED:
                    pipe.hdel(job, "worker", "started_at", "delivery")
                    pipe.xadd(stream, {"id": r.id})
                if r.key is not None and r.state in (JobState.SUCCEEDED, JobState.DEAD):
                    pipe.delete(k.key(r.key))
            await pipe.execute()

    # -- reading -----------------------------------------------------------------------------

    async def get(self, job_id: str) -> JobRecord | None:
        async with self._translated("get"):
            data = await self.redis.hgetall(self.keys.job(job_id))
        return _from_hash(data) if data else None

    async def depth(self, queue: str) -> dict[str, int]:
        k = self.keys
        async with self._translated("depth"):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xlen(k.stream(queue))
                pipe.xpending(k.stream(queue), GROUP)
                for name in self._waiting(queue):
                    pipe.zcard(name)
                pipe.zcard(k.dead(queue))
                length, pending, *counts = await pipe.execute(raise_on_error=False)
        running = 0 if isinstance(pending, Exception) else int(pending["pending"])
        found = {
            JobState.QUEUED: max(0, int(length) - running), JobState.RUNNING: running,
            **dict(zip((*_WAITING, JobState.DEAD), counts, strict=True)),
        }
        return {str(state): int(found[state]) for state in DEPTH_STATES}

    async def oldest_age(self, queue: str, now: float) -> float | None:
        stream = self.keys.stream(queue)
        async with self._translated("oldest_age"):
            start = "-"
            with contextlib.suppress(ResponseError):
                for group in await self.redis.xinfo_groups(stream):
                    if group["name"] == GROUP:
                        start = "(" + group["last-delivered-id"]
            entries = await self.redis.xrange(stream, start, "+", count=1)
        if not entries:
            return None
        return max(0.0, now - int(entries[0][0].split("-")[0]) / 1000)

    async def queues(self) -> list[str]:
        async with self._translated("queues"):
            return sorted(await self.redis.smembers(self.keys.queues))

    async def dead(self, queue: str | None = None, limit: int = 100) -> list[JobRecord]:
        found: list[JobRecord] = []
        for name in [queue] if queue else await self.queues():
            async with self._translated("dead"):
                ids = await self.redis.zrange(self.keys.dead(name), 0, limit - 1)
            for job_id in ids:
                record = await self.get(job_id)
                if record is not None:
                    found.append(record)
        return sorted(found, key=lambda r: r.finished_at or 0.0)[:limit]

    # -- operator actions --------------------------------------------------------------------

    async def cancel(self, job_id: str, now: float) -> bool:
        record = await self.get(job_id)
        if record is None:
            return False
        async with self._translated("cancel"):
            done = await self._cancel(
                keys=[self.keys.job(job_id), *self._waiting(record.queue)],
                args=[now, 86400, self.keys.key(record.key) if record.key else ""],
            )
        return bool(done)

    async def retry_dead(self, job_id: str | None, now: float) -> int:
        targets = [await self.get(job_id)] if job_id else await self.dead(limit=1_000_000)
        moved = 0
        async with self._translated("retry"):
            for record in targets:
                if record is None:
                    continue
                moved += await self._retry_dead(
                    keys=[self.keys.job(record.id), self.keys.dead(record.queue),
                          self.keys.stream(record.queue)],
                    args=[record.id, now],
                )
        return moved

    async def purge(self, queue: str | None = None) -> int:
        purged = 0
        names = [queue] if queue else await self.queues()
        async with self._translated("purge"):
            for name in names:
                ids = await self.redis.zrange(self.keys.dead(name), 0, -1)
                if ids:
                    await self.redis.delete(*(self.keys.job(i) for i in ids))
                    await self.redis.zrem(self.keys.dead(name), *ids)
                purged += len(ids)
        return purged

    async def claim_tick(self, name: str, tick: float) -> bool:
        async with self._translated("claim_tick"):
            return bool(await self.redis.set(self.keys.tick(name, tick), 1, nx=True,
                                             ex=_TICK_TTL))


def _from_flat(values: list) -> JobRecord:
    return _from_hash(dict(zip(values[::2], values[1::2], strict=True)))


def _from_hash(data: dict) -> JobRecord:
    return JobRecord.from_fields(data, base=json.loads(data["spec"]))

