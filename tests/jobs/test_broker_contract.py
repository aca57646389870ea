"""One contract for every broker: memory, SQLite (a file under tmp_path) and real Redis.
Times are real (`time.time()`) because Redis measures lease idle time on its own clock."""

from __future__ import annotations

import asyncio
import time

import pytest

from surge.errors import BrokerError
from surge.jobs.broker import Broker, broker_from_url
from surge.jobs.record import JobRecord
from surge.jobs.states import JobState

pytestmark = pytest.mark.integration


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def broker(request, tmp_path) -> Broker:
    if request.param == "memory":
        url = "memory://"
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/jobs.db"
    else:
        url = request.getfixturevalue("redis_url")
    b = broker_from_url(url)
    yield b
    await b.close()


def job(name: str = "task", queue: str = "default", **fields) -> JobRecord:
    now = time.time()
    return JobRecord(name=name, queue=queue, created_at=now, run_at=now, **fields)


async def claim(b: Broker, limit: int = 10, queues=("default",), worker="w1", lease=30.0):
    return await b.claim(list(queues), worker, limit, lease, time.time())


async def test_a_claimed_job_is_running_with_its_attempt_counted(broker):
    stored = await broker.enqueue(job(args=[1, "a"], kwargs={"k": [1, 2]}))
    [claimed] = await claim(broker)
    assert claimed.id == stored.id
    assert (claimed.state, claimed.attempts, claimed.worker) == (JobState.RUNNING, 1, "w1")
    assert (claimed.args, claimed.kwargs) == ([1, "a"], {"k": [1, 2]})
    assert (await broker.get(stored.id)).state == JobState.RUNNING


async def test_a_job_is_handed_to_one_claimer_only(broker):
    for _ in range(5):
        await broker.enqueue(job())
    first = await claim(broker, limit=3, worker="w1")
    second = await claim(broker, limit=10, worker="w2")
    assert len(first) == 3 and len(second) == 2
    assert not {j.id for j in first} & {j.id for j in second}
    assert await claim(broker, worker="w3") == []


async def test_jobs_come_oldest_first_and_earlier_queues_first(broker):
    low = [await broker.enqueue(job(queue="low")) for _ in range(2)]
    high = [await broker.enqueue(job(queue="high")) for _ in range(2)]
    got = await claim(broker, limit=1, queues=("high", "low"))
    got += await claim(broker, limit=1, queues=("high", "low"))
    got += await claim(broker, limit=1, queues=("high", "low"))
    assert [j.id for j in got] == [high[0].id, high[1].id, low[0].id]


async def test_an_idempotency_key_returns_the_pending_job(broker):
    first = await broker.enqueue(job(key="welcome:42"))
    again = await broker.enqueue(job(key="welcome:42"))
    assert again.id == first.id
    [running] = await claim(broker)
    assert (await broker.enqueue(job(key="welcome:42"))).id == first.id
    running.state, running.finished_at = JobState.SUCCEEDED, time.time()
    await broker.settle([running], time.time(), ttl=60)
    assert (await broker.enqueue(job(key="welcome:42"))).id != first.id


async def test_a_scheduled_job_waits_for_its_time(broker):
    later = job(state=JobState.SCHEDULED)
    later.run_at = time.time() + 0.3
    await broker.enqueue(later)
    assert await claim(broker) == []
    assert (await broker.depth("default"))["scheduled"] == 1
    await asyncio.sleep(0.35)
    [claimed] = await claim(broker)
    assert claimed.id == later.id


async def test_an_expired_lease_hands_the_job_to_another_worker(broker):
    await broker.enqueue(job())
    [first] = await claim(broker, worker="w1", lease=0.2)
    assert await claim(broker, worker="w2", lease=0.2) == []
    await asyncio.sleep(0.3)
    [second] = await claim(broker, worker="w2", lease=0.2)
    assert (second.id, second.attempts, second.worker) == (first.id, 2, "w2")


async def test_extending_a_lease_keeps_the_job(broker):
    await broker.enqueue(job())
    [mine] = await claim(broker, worker="w1", lease=0.3)
    for _ in range(3):
        await asyncio.sleep(0.15)
        await broker.extend([mine], "w1", 0.3, time.time())
    assert await claim(broker, worker="w2", lease=0.3) == []


async def test_a_retrying_job_runs_again_when_due(broker):
    await broker.enqueue(job())
    [claimed] = await claim(broker)
    claimed.state, claimed.error = JobState.RETRYING, "boom"
    claimed.run_at = time.time() + 0.2
    await broker.settle([claimed], time.time(), ttl=60)
    assert (await broker.depth("default"))["retrying"] == 1
    assert await claim(broker) == []
    await asyncio.sleep(0.25)
    [again] = await claim(broker)
    assert (again.id, again.attempts, again.error) == (claimed.id, 2, "boom")


async def test_dead_jobs_are_listed_retried_and_purged(broker):
    for _ in range(2):
        await broker.enqueue(job())
    for claimed in await claim(broker):
        claimed.state, claimed.error = JobState.DEAD, "ValueError: nope"
        claimed.traceback, claimed.finished_at = "Traceback...", time.time()
        await broker.settle([claimed], time.time(), ttl=60)
    dead = await broker.dead("default")
    assert [(d.state, d.error, d.attempts) for d in dead] == [
        (JobState.DEAD, "ValueError: nope", 1)
    ] * 2
    assert (await broker.depth("default"))["dead"] == 2
    assert await broker.retry_dead(dead[0].id, time.time()) == 1
    [revived] = await claim(broker)
    assert (revived.id, revived.attempts) == (dead[0].id, 1)
    assert await broker.purge("default") == 1
    assert await broker.dead() == []


async def test_a_released_job_is_claimable_again(broker):
    await broker.enqueue(job())
    [claimed] = await claim(broker)
    claimed.state, claimed.attempts = JobState.QUEUED, claimed.attempts - 1
    await broker.settle([claimed], time.time(), ttl=60)
    [again] = await claim(broker, worker="w2")
    assert (again.id, again.attempts) == (claimed.id, 1)


async def test_a_finished_job_keeps_its_result(broker):
    await broker.enqueue(job())
    [claimed] = await claim(broker)
    claimed.state, claimed.result, claimed.finished_at = JobState.SUCCEEDED, {"n": 3}, time.time()
    await broker.settle([claimed], time.time(), ttl=60)
    stored = await broker.get(claimed.id)
    assert (stored.state, stored.result) == (JobState.SUCCEEDED, {"n": 3})
    assert await broker.get("no-such-job") is None


async def test_depth_counts_jobs_by_state_and_oldest_age_measures_the_wait(broker):
    assert await broker.oldest_age("default", time.time()) is None
    for _ in range(3):
        await broker.enqueue(job())
    await claim(broker, limit=1)
    await asyncio.sleep(0.05)
    depth = await broker.depth("default")
    assert (depth["queued"], depth["running"], depth["dead"]) == (2, 1, 0)
    assert 0.04 <= await broker.oldest_age("default", time.time()) < 5
    assert await broker.queues() == ["default"]


async def test_a_cancelled_job_never_runs(broker):
    stored = await broker.enqueue(job())
    assert await broker.cancel(stored.id, time.time())
    assert await claim(broker) == []
    assert (await broker.get(stored.id)).state == JobState.CANCELLED
    assert not await broker.cancel(stored.id, time.time())


async def test_a_cron_tick_is_claimed_once(broker):
    results = await asyncio.gather(*(broker.claim_tick("report", 1700000000.0) for _ in range(5)))
    assert sorted(results) == [False] * 4 + [True]
    assert await broker.claim_tick("report", 1700000060.0)


async def test_an_unreachable_broker_raises_a_broker_error_quickly(tmp_path):
    for url in ("redis://127.0.0.1:1/0", f"sqlite:///{tmp_path}/missing-dir-is-a-file/x.db"):
        if url.startswith("sqlite"):
            (tmp_path / "missing-dir-is-a-file").write_text("")
        b = broker_from_url(url)
        started = time.monotonic()
        with pytest.raises(BrokerError):
            await b.enqueue(job())
        assert time.monotonic() - started < 10
        await b.close()


async def test_a_redis_worker_leaves_no_idle_consumer_behind(redis_url):
    b = broker_from_url(redis_url)
    await b.enqueue(job())
    [claimed] = await claim(b, worker="short-lived")
    claimed.state, claimed.finished_at = JobState.SUCCEEDED, time.time()
    await b.settle([claimed], time.time(), ttl=60)
    await b.close()
    b = broker_from_url(redis_url)
    assert await b.redis.xinfo_consumers(b.keys.stream("default"), "workers") == []
    await b.close()
