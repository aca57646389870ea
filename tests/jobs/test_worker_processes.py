"""Real `surge worker` processes over SQLite and Redis: kill -9 in the middle of work,
SIGTERM with a grace time, a poison job that kills its worker, and the jobs CLI."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from surge.cli import main
from surge.jobs import JobState, Queue

pytestmark = pytest.mark.integration

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import sample_jobs  # noqa: E402


@pytest.fixture(params=["sqlite", "redis"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/jobs.db"
    return request.getfixturevalue("redis_url")


@pytest.fixture
def workers(url, tmp_path):
    """Start `surge worker sample_jobs:queue` processes; all are killed at the end."""
    sink = str(tmp_path / "sink.db")
    sample_jobs.create_sink(sink)
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "SURGE_TEST_JOBS_SINK": sink, "SURGE_TEST_JOBS_LEASE": "500ms"}
    started: list[subprocess.Popen] = []

    def start(*extra: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-m", "surge.cli", "worker", "sample_jobs:queue", "--broker", url,
             *extra], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True,
        )
        started.append(process)
        return process

    start.sink = sink
    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


def seen(sink: str) -> list[int]:
    db = sqlite3.connect(sink)
    rows = [row[0] for row in db.execute("SELECT n FROM seen")]
    db.close()
    return rows


async def wait_until_idle(queue: Queue, timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        depth = await queue.depth()
        if not any(depth[s] for s in ("queued", "scheduled", "running", "retrying")):
            return depth
        await asyncio.sleep(0.1)
    raise AssertionError(f"queue not drained: {depth}")


async def enqueue_records(queue: Queue, count: int) -> None:
    fn = queue.jobs["record"]
    for start in range(0, count, 200):
        await asyncio.gather(*(fn.enqueue(n) for n in range(start, min(count, start + 200))))


async def test_no_job_is_lost_when_workers_are_killed_mid_work(url, workers):
    """The issue's durability test, scaled to 3,000 jobs for the suite (bench/jobs.py runs
    10,000): 4 workers, two killed with SIGKILL at random moments and restarted."""
    count = 3000
    queue = Queue.from_url(url)
    queue.job(name="record")(sample_jobs.record.fn)
    await enqueue_records(queue, count)
    procs = [workers("--concurrency", "8") for _ in range(4)]
    rng = random.Random()
    for victim in rng.sample(procs, 2):
        await asyncio.sleep(rng.uniform(0.2, 1.0))
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        workers("--concurrency", "8")
    await wait_until_idle(queue, timeout=40)
    ran = seen(workers.sink)
    assert set(ran) == set(range(count)), f"lost: {sorted(set(range(count)) - set(ran))[:20]}"
    duplicates = len(ran) - count
    print(f"\n{count} jobs, 2 workers killed: {duplicates} ran twice (from the kills)")
    assert duplicates <= 2 * 8 * 2    # at most the kills' in-flight jobs, and their batches
    await queue.close()


async def test_sigterm_lets_running_jobs_finish_and_releases_the_rest(url, workers):
    queue = Queue.from_url(url)
    slow = queue.job(name="slow")(sample_jobs.slow.fn)
    for n in range(4):
        await slow.enqueue(n, 0.2)
    for n in range(4, 7):
        await slow.enqueue(n, 1.5)
    worker = workers("--concurrency", "10", "--grace", "500ms")
    deadline = time.monotonic() + 10
    while (await queue.depth())["running"] < 7 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=10) == 0
    assert sorted(seen(workers.sink)) == [0, 1, 2, 3]
    depth = await queue.depth()
    assert (depth["queued"], depth["running"]) == (3, 0)
    workers("--concurrency", "10")
    await wait_until_idle(queue, timeout=15)
    assert sorted(seen(workers.sink)) == list(range(7))   # none lost, none doubled
    await queue.close()


async def test_a_job_that_kills_its_worker_is_dead_lettered_not_retried_forever(url, workers):
    queue = Queue.from_url(url)
    crash = queue.job(name="crash", retries=1)(sample_jobs.crash.fn)   # options travel with it
    job = await crash.enqueue()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        record = await queue.get(job.id)
        if record.state == JobState.DEAD:
            break
        process = workers("--concurrency", "1")
        try:
            process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            pass
    assert record.state == JobState.DEAD
    assert "lost its worker" in record.error
    assert seen(workers.sink) == [-1, -1]   # retries=1: two runs, then dead
    await queue.close()


def test_the_jobs_cli_lists_retries_and_purges_dead_jobs(url, capsys):
    async def make_dead() -> list[str]:
        queue = Queue.from_url(url)
        ids = []
        for _ in range(2):
            job = await queue.enqueue("doomed", 1)
            ids.append(job.id)
        for record in await queue.broker.claim(["default"], "w", 10, 30, time.time()):
            record.state, record.error, record.finished_at = JobState.DEAD, "KeyError: 'x'", 1.0
            await queue.broker.settle([record], time.time(), 60)
        await queue.close()
        return ids

    ids = asyncio.run(make_dead())

    def surge(*args: str) -> tuple[int, str]:
        code = main(["jobs", *args, "--broker", url])
        return code, capsys.readouterr().out

    code, out = surge("dead")
    assert code == 0
    for job_id in ids:
        assert f"{job_id}  doomed  attempts=1  KeyError: 'x'" in out
    code, out = surge("stats")
    assert "default" in out and out.split()[-2] == "2"   # the dead column
    assert surge("retry", ids[0]) == (0, "1 job(s) back in their queue\n")
    assert surge("retry", "no-such-id")[0] == 1
    assert surge("purge") == (0, "1 dead job(s) deleted\n")
    assert surge("retry", "--all") == (0, "0 job(s) back in their queue\n")
