"""The worker in-process, over SQLite and real Redis: results, retries with their backoff,
dead letters, timeouts, unknown jobs, sync jobs, per-queue caps, cron and idempotent keys."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import REGISTRY

from surge.errors import JobError
from surge.jobs import JobState, Queue
from surge.jobs.worker import Worker

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "redis"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/jobs.db"
    return request.getfixturevalue("redis_url")


class Running:
    """A worker running in the background of the test's event loop."""

    def __init__(self, queue: Queue, **options) -> None:
        options.setdefault("poll", "20ms")
        self.worker = Worker(queue, **options)
        self.task = asyncio.create_task(self.worker.run())

    async def stop(self) -> None:
        self.worker.stop()
        await asyncio.wait_for(self.task, 10)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_job_runs_and_its_result_is_readable_by_id_and_counted(url):
    queue = Queue.from_url(url)

    @queue.job
    async def add(a: int, b: int) -> int:
        return a + b

    succeeded = sample("surge_jobs_total", queue="default", outcome="succeeded")
    worker = Running(queue)
    job = await add.enqueue(2, 3)
    assert await job.result(timeout=5) == 5
    assert (await queue.get(job.id)).state == JobState.SUCCEEDED
    assert sample("surge_jobs_total", queue="default", outcome="succeeded") == succeeded + 1
    assert sample("surge_job_run_seconds_count", queue="default") >= 1
    await worker.stop()
    await queue.close()


async def test_a_failing_job_backs_off_then_is_dead_lettered_with_its_traceback(url):
    queue = Queue.from_url(url)
    runs: list[float] = []

    @queue.job(retries=3, backoff="100ms", max_backoff="200ms")
    def flaky() -> None:
        runs.append(time.monotonic())
        raise ConnectionError("dependency down")

    worker = Running(queue)
    job = await flaky.enqueue()
    with pytest.raises(JobError, match="is dead: ConnectionError: dependency down"):
        await job.result(timeout=10)
    record = await queue.get(job.id)
    assert record.attempts == 4 and len(runs) == 4
    assert "raise ConnectionError" in record.traceback
    gaps = [b - a for a, b in zip(runs, runs[1:], strict=False)]
    assert all(0.1 <= gap < 0.2 + 0.3 for gap in gaps), gaps   # backoff bounds + poll slack
    assert [d.id for d in await queue.broker.dead()] == [job.id]
    await worker.stop()
    await queue.close()


async def test_a_job_over_its_timeout_is_cancelled_and_counted_as_a_failure(url):
    queue = Queue.from_url(url)

    @queue.job(retries=0, timeout="100ms")
    async def slow() -> None:
        await asyncio.sleep(5)

    worker = Running(queue)
    job = await slow.enqueue()
    with pytest.raises(JobError, match="timed out after 0.1s"):
        await job.result(timeout=5)
    await worker.stop()
    await queue.close()


async def test_an_unknown_job_waits_until_a_worker_that_knows_it_runs_it(url):
    old = Queue.from_url(url)
    worker = Running(old, unknown_delay="200ms")
    job = await old.enqueue("reports.build", 7)
    for _ in range(100):
        record = await old.get(job.id)
        if record.state == JobState.UNKNOWN:
            break
        await asyncio.sleep(0.02)
    assert record.state == JobState.UNKNOWN and record.attempts == 0
    assert "no job named 'reports.build'" in record.error
    await worker.stop()

    new = Queue.from_url(url)

    @new.job(name="reports.build")
    async def build(n: int) -> int:
        return n * 2

    worker = Running(new)
    assert await job.result(timeout=5) == 14
    await worker.stop()
    await old.close()
    await new.close()


async def test_enqueue_with_a_delay_runs_the_job_later(url):
    queue = Queue.from_url(url)

    @queue.job
    async def stamp() -> float:
        return time.time()

    worker = Running(queue)
    job = await stamp.enqueue(_delay="300ms")
    assert job.record.state == JobState.SCHEDULED
    assert await job.result(timeout=5) >= job.record.run_at
    await worker.stop()
    await queue.close()


async def test_fifty_concurrent_enqueues_of_one_key_make_one_job(url):
    queues = [Queue.from_url(url) for _ in range(50)]
    for q in queues:
        q.job(name="welcome")(lambda user: None)
    jobs = await asyncio.gather(*(q.enqueue("welcome", 42, _key="welcome:42") for q in queues))
    assert len({j.id for j in jobs}) == 1
    assert (await queues[0].depth())["queued"] == 1
    for q in queues:
        await q.close()


async def test_a_queue_concurrency_cap_limits_jobs_running_at_once(url):
    queue = Queue.from_url(url)
    queue.configure("serial", concurrency=1)
    live, most = 0, 0

    @queue.job(queue="serial")
    async def one_at_a_time() -> None:
        nonlocal live, most
        live += 1
        most = max(most, live)
        await asyncio.sleep(0.02)
        live -= 1

    worker = Running(queue, queues=["serial"], concurrency=8)
    jobs = [await one_at_a_time.enqueue() for _ in range(6)]
    for job in jobs:
        await job.result(timeout=5)
    assert most == 1
    await worker.stop()
    await queue.close()


async def test_a_queue_rate_limit_paces_job_starts(url):
    queue = Queue.from_url(url)
    queue.configure("paced", rate_limit="4/second")
    starts: list[float] = []

    @queue.job(queue="paced")
    async def tick() -> None:
        starts.append(time.monotonic())

    jobs = [await tick.enqueue() for _ in range(8)]
    worker = Running(queue, queues=["paced"])
    for job in jobs:
        await job.result(timeout=10)
    # a burst of 4, then one every 250 ms
    assert starts[-1] - starts[0] >= 0.9
    await worker.stop()
    await queue.close()


async def test_a_cron_job_runs_once_per_tick_across_three_workers(url):
    runs: list[float] = []
    workers = []
    queues = []
    for _ in range(3):
        queue = Queue.from_url(url)
        queue.cron("* * * * * *", name="heartbeat")(lambda: runs.append(time.time()))
        queues.append(queue)
        workers.append(Running(queue))
    await asyncio.sleep(2.2)
    for worker in workers:
        await worker.stop()
    seconds = [int(t) for t in runs]
    assert len(runs) >= 2
    assert len(seconds) == len(set(seconds)), runs
    for queue in queues:
        await queue.close()


def test_a_sync_app_can_enqueue_without_an_event_loop(url):
    queue = Queue.from_url(url)

    @queue.job
    def mail(to: str) -> str:
        return to

    job = mail.enqueue_sync("a@example.com")
    assert job.record.state == JobState.QUEUED
    assert mail.enqueue_sync("b@example.com", _key="k").id == mail.enqueue_sync("c", _key="k").id

    async def run_it() -> str:
        worker = Running(queue)
        result = await job.result(timeout=5)
        await worker.stop()
        await queue.close()
        return result

    assert asyncio.run(run_it()) == "a@example.com"


async def test_a_queue_built_from_surge_yaml_takes_its_queue_defaults(url):
    queue = Queue.from_config({"broker": url, "queues": {
        "default": {"retries": 2, "backoff": "2s", "max_backoff": "1m", "timeout": "10s"},
        "emails": {"concurrency": 4, "rate_limit": "10/second"},
    }})

    @queue.job
    async def send() -> None: ...

    job = await send.enqueue()
    assert (job.record.retries, job.record.backoff, job.record.max_backoff,
            job.record.timeout) == (2, 2.0, 60.0, 10.0)
    assert (queue.settings["emails"].concurrency, queue.settings["emails"].rate_limit) == (
        4, "10/second")
    assert await job.cancel()
    assert await job.state() == JobState.CANCELLED
    await queue.close()


async def test_the_worker_rides_out_a_broker_outage_without_losing_jobs(redis_url):
    """Redis behind a TCP proxy that the test cuts for a second in the middle of the work."""
    host, port = redis_url.split("//")[1].split("/")[0].split(":")
    db = redis_url.rsplit("/", 1)[1]
    links: list[asyncio.StreamWriter] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(host, int(port))
        links.extend((client_w, server_w))
        await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))

    proxy = await asyncio.start_server(relay, "127.0.0.1", 0)
    proxy_port = proxy.sockets[0].getsockname()[1]
    # A claim whose reply the cut swallows leaves its jobs leased to this worker, unknown to it,
    # until the lease runs out: a short lease brings them back within the test.
    queue = Queue.from_url(f"redis://127.0.0.1:{proxy_port}/{db}", lease="2s")
    done: list[int] = []

    @queue.job(name="step")
    async def step(n: int) -> None:
        await asyncio.sleep(0.01)
        done.append(n)

    jobs = [await step.enqueue(n) for n in range(300)]
    worker = Running(queue, concurrency=4)
    while len(done) < 50:
        await asyncio.sleep(0.01)
    proxy.close()                       # the broker goes away ...
    for link in links:
        link.close()
    await asyncio.sleep(1.0)
    proxy = await asyncio.start_server(relay, "127.0.0.1", proxy_port)   # ... and comes back
    checker = Queue.from_url(redis_url)
    for job in jobs:
        assert (await checker.get(job.id)) is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        states = {(await checker.get(j.id)).state for j in jobs}
        if states == {JobState.SUCCEEDED}:
            break
        await asyncio.sleep(0.2)
    assert set(done) == set(range(300))
    await worker.stop()
    proxy.close()
    await checker.close()
    await queue.close()


async def test_unserialisable_arguments_fail_at_enqueue_and_store_nothing(url):
    queue = Queue.from_url(url)

    @queue.job
    async def send(to: object) -> None: ...

    with pytest.raises(JobError, match=r"argument 0 \(set\) is not JSON-serialisable"):
        await send.enqueue({"a@example.com"})
    assert await queue.broker.queues() == []
    await queue.close()
