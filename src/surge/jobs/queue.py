"""The public job API: `Queue` (a broker plus the job functions and cron entries registered on
it), `JobFunction` (what `@queue.job` returns: call it to run inline, `.enqueue` to run in the
background) and `Job` (a handle on one enqueued job). No worker logic lives here.

    queue = Queue.from_url("sqlite:///.surge/jobs.db")
    @queue.job(retries=5, backoff="1s", max_backoff="10m", timeout="5m")
    async def send_email(to: str, subject: str) -> None: ...
    job = await send_email.enqueue("a@example.com", "hi", _delay="30s", _key="welcome:42")
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from surge.config.checks import check_not_below
from surge.config.units import parse_duration
from surge.errors import JobError
from surge.jobs.broker import Broker, broker_from_url
from surge.jobs.record import JobRecord, encode_arguments
from surge.jobs.states import JobState

_SYNC_ENQUEUE_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class JobOptions:
    """How one job runs; per-queue defaults, overridden per job function."""

    retries: int = 5
    backoff: float = 1.0
    max_backoff: float = 600.0
    timeout: float = 300.0

    def __post_init__(self) -> None:  # the config model's rule, for options given in code
        check_not_below(self.max_backoff, self.backoff, "max_backoff", "backoff", "s")

    def merged(self, **overrides: Any) -> JobOptions:
        given = {k: v for k, v in overrides.items() if v is not None}
        for name in ("backoff", "max_backoff", "timeout"):
            if name in given:
                given[name] = parse_duration(given[name])
        return replace(self, **given)


@dataclass(slots=True)
class QueueSettings:
    """Per named queue: job defaults, worker concurrency cap, optional rate limit."""

    defaults: JobOptions = field(default_factory=JobOptions)
    concurrency: int | None = None
    rate_limit: str | None = None


@dataclass(frozen=True, slots=True)
class CronEntry:
    expression: str
    job: JobFunction


class Queue:
    """Job functions bound to one broker. Creating it connects to nothing."""

    def __init__(
        self, broker: Broker | str, *, lease: str | float = "30s", result_ttl: str | float = "1d"
    ) -> None:
        self.url = broker if isinstance(broker, str) else broker.url
        self._broker = broker if isinstance(broker, Broker) else None
        self.lease = parse_duration(lease)
        self.result_ttl = parse_duration(result_ttl)
        self.jobs: dict[str, JobFunction] = {}
        self.crons: list[CronEntry] = []
        self.settings: dict[str, QueueSettings] = {}
        self._sync_loop: asyncio.AbstractEventLoop | None = None
        self._sync_broker: Broker | None = None
        self._sync_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Queue:
        return cls(url, **options)

    @classmethod
    def from_config(cls, jobs: Mapping[str, Any], **options: Any) -> Queue:
        """From the `jobs` section of surge.yaml: `broker` and per-queue `queues` settings."""
        queue = cls(jobs.get("broker", "sqlite:///.surge/jobs.db"), **options)
        for name, settings in (jobs.get("queues") or {}).items():
            queue.configure(name, **settings)
        return queue

    @property
    def broker(self) -> Broker:
        if self._broker is None:
            self._broker = broker_from_url(self.url)
        return self._broker

    def use(self, broker: Broker | str) -> None:
        """Point this queue at another broker (`surge worker --broker URL`)."""
        self.url = broker if isinstance(broker, str) else broker.url
        self._broker = broker if isinstance(broker, Broker) else None

    def configure(
        self, name: str, *, concurrency: int | None = None, rate_limit: str | None = None,
        **defaults: Any,
    ) -> QueueSettings:
        """Settings of the named queue (`jobs.queues.NAME` in surge.yaml)."""
        current = self.settings.get(name, QueueSettings())
        self.settings[name] = QueueSettings(
            current.defaults.merged(**defaults),
            concurrency if concurrency is not None else current.concurrency,
            rate_limit if rate_limit is not None else current.rate_limit,
        )
        return self.settings[name]

    def job(
        self, fn: Callable | None = None, *, name: str | None = None, queue: str = "default",
        retries: int | None = None, backoff: str | float | None = None,
        max_backoff: str | float | None = None, timeout: str | float | None = None,
    ) -> Any:
        """Register a job function; usable as `@queue.job` or `@queue.job(...)`."""
        overrides = dict(retries=retries, backoff=backoff, max_backoff=max_backoff,
                         timeout=timeout)

        def register(func: Callable) -> JobFunction:
            job_name = name or f"{func.__module__}.{func.__qualname__}"
            if job_name in self.jobs:
                raise JobError(f"a job named {job_name!r} is already registered")
            self.jobs[job_name] = JobFunction(self, func, job_name, queue, overrides)
            return self.jobs[job_name]

        return register(fn) if fn is not None else register

    def cron(self, expression: str, **job_options: Any) -> Callable[[Callable], JobFunction]:
        """Register a job that runs once per tick of a cron expression (5 fields, or 6 with
        seconds last) across all workers serving its queue. Takes the options of `job`."""
        from croniter import croniter

        if not croniter.is_valid(expression):
            raise JobError(f"invalid cron expression {expression!r}")

        def register(func: Callable) -> JobFunction:
            job_fn = self.job(func, **job_options)
            self.crons.append(CronEntry(expression, job_fn))
            return job_fn

        return register

    def options_for(self, queue: str) -> JobOptions:
        return self.settings.get(queue, QueueSettings()).defaults

    async def enqueue(self, name: str, *args: Any, _queue: str = "default", **kwargs: Any) -> Job:
        """Enqueue a job by name, also one this process did not register (another service's);
        takes the same `_` options as `JobFunction.enqueue`."""
        job_fn = self.jobs.get(name) or JobFunction(self, None, name, _queue, {})
        return await job_fn.enqueue(*args, **kwargs)

    async def _submit(self, broker: Broker, record: JobRecord) -> Job:
        stored = await broker.enqueue(record)
        return Job(self, stored.id, stored)

    def _enqueue_sync(self, record: JobRecord) -> Job:
        """Run an enqueue on a private event loop thread with its own broker client, so code
        without an event loop (or inside another one) can enqueue."""
        with self._sync_lock:
            if self._sync_loop is None:
                self._sync_loop = asyncio.new_event_loop()
                threading.Thread(target=self._sync_loop.run_forever, name="surge-enqueue",
                                 daemon=True).start()
                memory = self.url.startswith("memory:")
                self._sync_broker = self.broker if memory else broker_from_url(self.url)
        assert self._sync_broker is not None
        future = asyncio.run_coroutine_threadsafe(
            self._submit(self._sync_broker, record), self._sync_loop
        )
        return future.result(_SYNC_ENQUEUE_TIMEOUT)

    async def get(self, job_id: str) -> JobRecord | None:
        return await self.broker.get(job_id)

    async def cancel(self, job_id: str) -> bool:
        """Cancel a job that has not started; False if it is running, finished or unknown."""
        return await self.broker.cancel(job_id, time.time())

    async def depth(self, queue: str = "default") -> dict[str, int]:
        """Jobs in `queue` by state: what the autoscaler's queue_depth_per_replica reads."""
        return await self.broker.depth(queue)

    async def oldest_age(self, queue: str = "default") -> float | None:
        return await self.broker.oldest_age(queue, time.time())

    async def close(self) -> None:
        if self._broker is not None:
            await self._broker.close()
        if self._sync_loop is not None:
            if self._sync_broker is not None and self._sync_broker is not self._broker:
                asyncio.run_coroutine_threadsafe(
                    self._sync_broker.close(), self._sync_loop
                ).result(_SYNC_ENQUEUE_TIMEOUT)
            self._sync_loop.call_soon_threadsafe(self._sync_loop.stop)
            self._sync_loop = None


class JobFunction:
    """A registered job. Calling it runs the function here and now; `enqueue` runs it on a
    worker. Keyword arguments that start with `_` are enqueue options, not job arguments."""

    def __init__(
        self, queue: Queue, fn: Callable | None, name: str, queue_name: str, overrides: dict
    ) -> None:
        self.queue, self.fn, self.name, self.queue_name = queue, fn, name, queue_name
        self._overrides = overrides
        self.is_async = asyncio.iscoroutinefunction(fn)

    @property
    def options(self) -> JobOptions:
        return self.queue.options_for(self.queue_name).merged(**self._overrides)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.fn is None:
            raise JobError(f"job {self.name!r} is not defined in this process")
        return self.fn(*args, **kwargs)

    def record(
        self, *args: Any, _delay: str | float | None = None, _at: datetime | float | None = None,
        _key: str | None = None, **kwargs: Any,
    ) -> JobRecord:
        """The record `enqueue` stores; unserialisable arguments raise `JobError` here."""
        record = _record(self.name, self.queue_name, self.options, args, kwargs, _key)
        if _delay is not None:
            record.run_at = record.created_at + parse_duration(_delay)
        elif _at is not None:
            record.run_at = _at.timestamp() if isinstance(_at, datetime) else float(_at)
        if record.run_at > record.created_at:
            record.state = JobState.SCHEDULED
        return record

    async def enqueue(self, *args: Any, **kwargs: Any) -> Job:
        """Store the job for a worker; returns at once. `_delay="30s"` or `_at=datetime`
        schedule it; `_key="..."` returns the pending job with that key instead of a second."""
        return await self.queue._submit(self.queue.broker, self.record(*args, **kwargs))

    def enqueue_sync(self, *args: Any, **kwargs: Any) -> Job:
        """`enqueue` for code without an event loop (Flask, Django views, scripts)."""
        return self.queue._enqueue_sync(self.record(*args, **kwargs))

    def __repr__(self) -> str:
        return f"<JobFunction {self.name} queue={self.queue_name}>"


class Job:
    """A handle on an enqueued job, readable by id from anywhere."""

    def __init__(self, queue: Queue, job_id: str, record: JobRecord | None = None) -> None:
        self.queue, self.id, self.record = queue, job_id, record

    async def refresh(self) -> JobRecord | None:
        self.record = await self.queue.get(self.id)
        return self.record

    async def state(self) -> JobState | None:
        record = await self.refresh()
        return record.state if record else None

    async def cancel(self) -> bool:
        return await self.queue.cancel(self.id)

    async def result(self, timeout: float = 60.0, poll: float = 0.05) -> Any:
        """Wait for the job to finish: its return value, or `JobError` if it died, was
        cancelled, or is still unfinished after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            record = await self.refresh()
            if record is not None and record.state == JobState.SUCCEEDED:
                return record.result
            if record is not None and record.state in (JobState.DEAD, JobState.CANCELLED):
                raise JobError(f"job {self.id} is {record.state}: {record.error}")
            if time.monotonic() >= deadline:
                state = record.state if record else "gone"
                raise JobError(f"job {self.id} did not finish within {timeout}s (it is {state})")
            await asyncio.sleep(poll)

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.record.state if self.record else '?'}>"


def _record(
    name: str, queue: str, options: JobOptions, args: tuple, kwargs: dict, key: str | None = None
) -> JobRecord:
    stored_args, stored_kwargs = encode_arguments(name, args, kwargs)
    now = time.time()
    return JobRecord(
        name=name, queue=queue, args=stored_args, kwargs=stored_kwargs, key=key,
        retries=options.retries, backoff=options.backoff, max_backoff=options.max_backoff,
        timeout=options.timeout, created_at=now, run_at=now,
    )
