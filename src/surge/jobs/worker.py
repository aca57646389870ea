"""The worker: claims jobs from a broker, runs them (asyncio tasks for async jobs, a thread pool
for sync ones), renews their leases while they run, and settles outcomes in batches. Also runs
the cron entries of its queues. `stop()` (SIGTERM) stops claiming, lets running jobs finish
within the grace time and releases the rest back to the queue.

What happens after a failure is decided by `backoff.after_failure`; lifecycle moves are checked
by `states.transition`. Process concerns (signals, importing the app) live in `commands`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import socket
import time
import traceback
from collections.abc import Awaitable, Sequence
from concurrent.futures import ThreadPoolExecutor

from surge.config.units import parse_duration
from surge.errors import BrokerError
from surge.jobs import metrics
from surge.jobs.backoff import after_failure, retry_delay
from surge.jobs.queue import CronEntry, JobFunction, Queue
from surge.jobs.record import JobRecord, encode_result
from surge.jobs.states import JobState, transition

log = logging.getLogger("surge.jobs.worker")

DEFAULT_CONCURRENCY = 16


class Worker:
    def __init__(
        self, queue: Queue, queues: Sequence[str] = ("default",), *,
        concurrency: int = DEFAULT_CONCURRENCY, grace: str | float = "30s",
        poll: str | float | None = None, unknown_delay: str | float = "30s",
        name: str | None = None, rng: random.Random | None = None,
    ) -> None:
        self.queue, self.broker = queue, queue.broker
        self.queues = list(queues)
        self.concurrency = concurrency
        self.grace = parse_duration(grace)
        self.poll = self.broker.poll_interval if poll is None else parse_duration(poll)
        self.unknown_delay = parse_duration(unknown_delay)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.rng = rng or random.Random()
        self.running: dict[str, tuple[JobRecord, asyncio.Task]] = {}
        self.processed = 0
        self.abandoned_threads = 0   # sync jobs released while their thread still runs
        self._stopping = asyncio.Event()   # stop claiming
        self._closing = asyncio.Event()    # drained: helpers finish their last round
        self._slot_free = asyncio.Event()
        self._outcomes: list[JobRecord] = []
        self._outcome_ready = asyncio.Event()
        self._threads = ThreadPoolExecutor(concurrency, thread_name_prefix="surge-job")
        self._limiters = _limiters(queue, self.queues)

    def stop(self) -> None:
        """Stop taking jobs; `run` then drains and returns."""
        self._stopping.set()

    # -- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        helpers = [
            asyncio.create_task(self._settle_loop(), name="settle"),
            asyncio.create_task(self._lease_loop(), name="lease"),
            asyncio.create_task(self._observe_loop(), name="observe"),
            *(asyncio.create_task(self._cron_loop(entry), name=f"cron:{entry.job.name}")
              for entry in self.queue.crons if entry.job.queue_name in self.queues),
        ]
        try:
            await self._claim_loop()
            await self._drain()
        finally:
            self._closing.set()
            # helpers watch `_closing`; cancelling is only the fallback because a client
            # library may swallow a cancellation in the middle of a call
            _, stuck = await asyncio.wait(helpers, timeout=5.0)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await self._flush_all()
            self._threads.shutdown(wait=False, cancel_futures=True)

    async def _claim_loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            free = self.concurrency - len(self.running)
            queues, limit = self._claimable(free)
            if limit <= 0:
                self._slot_free.clear()
                await _first(self._slot_free.wait(), self._stopping.wait(), timeout=self.poll)
                continue
            try:
                claimed = await self.broker.claim(
                    queues, self.name, limit, self.queue.lease, time.time(), wait=self.poll
                )
                failures = 0
            except BrokerError as exc:
                failures += 1
                metrics.BROKER_ERRORS.labels("claim").inc()
                delay = retry_delay(failures, 0.1, 10.0, self.rng)
                log.warning("broker unavailable (%s); retrying in %.1fs", exc, delay)
                await _first(self._stopping.wait(), timeout=delay)
                continue
            for record in claimed:
                self._start(record)

    def _claimable(self, free: int) -> tuple[list[str], int]:
        """Queues with room under their own concurrency and rate limits, and how many jobs
        one claim may take from them."""
        if free <= 0:
            return [], 0
        queues, limit = [], free
        for name in self.queues:
            room = free
            cap = self.queue.settings.get(name)
            if cap is not None and cap.concurrency is not None:
                busy = sum(1 for record, _ in self.running.values() if record.queue == name)
                room = min(room, cap.concurrency - busy)
            limiter = self._limiters.get(name)
            if limiter is not None:
                room = min(room, limiter.available(time.monotonic()))
            if room > 0:
                queues.append(name)
                limit = min(limit, room)
        return queues, limit if queues else 0

    def _start(self, record: JobRecord) -> None:
        limiter = self._limiters.get(record.queue)
        if limiter is not None:
            limiter.take(time.monotonic())
        task = asyncio.create_task(self._execute(record), name=f"job:{record.id}")
        self.running[record.id] = (record, task)

    async def _drain(self) -> None:
        """After stop: running jobs get `grace` seconds, then are cancelled and released."""
        tasks = [task for _, task in self.running.values()]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self.grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    # -- one job -----------------------------------------------------------------------------

    async def _execute(self, record: JobRecord) -> None:
        job_fn = self.queue.jobs.get(record.name)
        started = time.monotonic()
        try:
            if job_fn is None:
                self._unknown(record)
            elif record.attempts > record.retries + 1:
                self._fail(record, "the job lost its worker on every attempt (process crash, "
                           "kill or lease expiry)", None, dead=True)
            else:
                result = await asyncio.wait_for(self._call(job_fn, record), record.timeout)
                self._finish(record, JobState.SUCCEEDED, "succeeded", result=encode_result(result))
        except asyncio.CancelledError:
            self._release(record)
            if job_fn is not None and not job_fn.is_async:
                self.abandoned_threads += 1
        except TimeoutError:
            self._fail(record, f"timed out after {record.timeout:g}s", None, outcome="timeout")
        except Exception as exc:  # the job's own failure, whatever it is
            self._fail(record, f"{type(exc).__name__}: {exc}", traceback.format_exc())
        finally:
            if job_fn is not None:
                metrics.RUN_SECONDS.labels(record.queue).observe(time.monotonic() - started)
            self.running.pop(record.id, None)
            self._slot_free.set()

    async def _call(self, job_fn: JobFunction, record: JobRecord) -> object:
        fn = job_fn.fn
        assert fn is not None   # registered jobs always have their function
        if job_fn.is_async:
            return await fn(*record.args, **record.kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._threads, functools.partial(fn, *record.args, **record.kwargs)
        )

    def _finish(self, record: JobRecord, state: JobState, outcome: str, **changes: object) -> None:
        record.state = transition(record.state, state)
        for name, value in changes.items():
            setattr(record, name, value)
        if state not in (JobState.RETRYING, JobState.UNKNOWN, JobState.QUEUED):
            record.finished_at = time.time()
        metrics.JOBS.labels(record.queue, outcome).inc()
        self.processed += 1
        self._outcomes.append(record)
        self._outcome_ready.set()

    def _fail(
        self, record: JobRecord, error: str, trace: str | None, *, dead: bool = False,
        outcome: str | None = None,
    ) -> None:
        verdict = after_failure(record.attempts, record.retries, record.backoff,
                                record.max_backoff, self.rng)
        state = JobState.DEAD if dead else verdict.state
        self._finish(record, state, outcome or ("dead" if state == JobState.DEAD else "retried"),
                     error=error, traceback=trace, run_at=time.time() + verdict.delay)

    def _unknown(self, record: JobRecord) -> None:
        """Code deployed out of order: keep the job, uncounted, and look again later."""
        self._finish(record, JobState.UNKNOWN, "unknown", attempts=record.attempts - 1,
                     run_at=time.time() + self.unknown_delay,
                     error=f"no job named {record.name!r} in worker {self.name}")

    def _release(self, record: JobRecord) -> None:
        """Shutdown: the job goes back to the front of its queue, this run not counted."""
        self._finish(record, JobState.QUEUED, "released", attempts=record.attempts - 1,
                     worker=None, started_at=None)

    # -- helpers that run beside the claim loop ----------------------------------------------

    async def _settle_loop(self) -> None:
        while not self._closing.is_set():
            await _first(self._outcome_ready.wait(), self._closing.wait(), timeout=1.0)
            self._outcome_ready.clear()
            await self._flush()

    async def _flush(self) -> None:
        batch, self._outcomes = self._outcomes, []
        if not batch:
            return
        try:
            await self.broker.settle(batch, time.time(), self.queue.result_ttl)
        except BrokerError as exc:
            metrics.BROKER_ERRORS.labels("settle").inc()
            log.warning("could not record %d outcomes (%s); will retry", len(batch), exc)
            self._outcomes[:0] = batch   # keep them; the lease keeps the jobs ours meanwhile
            await asyncio.sleep(retry_delay(1, 0.1, 1.0, self.rng))
            self._outcome_ready.set()

    async def _flush_all(self) -> None:
        for attempt in range(1, 6):
            await self._flush()
            if not self._outcomes:
                return
            await asyncio.sleep(retry_delay(attempt, 0.2, 2.0, self.rng))
        log.error("gave up recording %d outcomes; their leases will expire and they will "
                  "run again", len(self._outcomes))

    async def _lease_loop(self) -> None:
        while not self._closing.is_set():
            await _first(self._closing.wait(), timeout=self.queue.lease / 3)
            records = [record for record, _ in self.running.values()]
            if records:
                with contextlib.suppress(BrokerError):
                    await self.broker.extend(records, self.name, self.queue.lease, time.time())

    async def _observe_loop(self) -> None:
        while not self._closing.is_set():
            with contextlib.suppress(BrokerError):
                await metrics.observe_queues(self.broker, self.queues, time.time())
            await _first(self._closing.wait(), timeout=5.0)

    async def _cron_loop(self, entry: CronEntry) -> None:
        """Enqueue one run per tick; `claim_tick` makes it one across all workers."""
        from croniter import croniter

        ticks = croniter(entry.expression, time.time())
        while not self._stopping.is_set():
            tick = ticks.get_next(float)
            await _first(self._stopping.wait(), timeout=max(0.0, tick - time.time()))
            if self._stopping.is_set():
                return
            try:
                if await self.broker.claim_tick(entry.job.name, tick):
                    await entry.job.enqueue(_key=f"cron:{entry.job.name}:{tick:.0f}")
            except BrokerError as exc:
                log.warning("cron %s missed tick %s: %s", entry.job.name, tick, exc)


class QueueRateLimit:
    """A queue's `rate_limit` (e.g. `10/second`), enforced per worker process by the rate
    limiting core: GCRA in a local store, peeked with cost 0, consumed as jobs start."""

    def __init__(self, queue: str, rate: str) -> None:
        from surge.config.units import parse_rate
        from surge.ratelimit.algorithms import Gcra
        from surge.ratelimit.store import LocalStore

        self.key = queue
        self.policy = Gcra([parse_rate(rate)])
        self.store = LocalStore()

    def available(self, now: float) -> int:
        return self.store.hit_sync("jobs", self.key, self.policy, 0, now).remaining

    def take(self, now: float) -> None:
        self.store.hit_sync("jobs", self.key, self.policy, 1, now)


def _limiters(queue: Queue, names: Sequence[str]) -> dict[str, QueueRateLimit]:
    return {
        name: QueueRateLimit(name, settings.rate_limit)
        for name, settings in queue.settings.items()
        if name in names and settings.rate_limit
    }


async def _first(*waits: Awaitable[object], timeout: float) -> None:
    """Return when the first of `waits` completes or after `timeout` seconds."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
