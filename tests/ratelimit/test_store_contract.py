"""One contract, every rate limit store: in-process and real Redis give the same answers.
Periods are long (an hour or more) so the seconds a test takes never refill a bucket."""

from __future__ import annotations

import asyncio
import time

import pytest

from surge.config.units import Rate
from surge.ratelimit.algorithms import make_policy
from surge.ratelimit.redis_store import RedisStore, redis_key
from surge.ratelimit.store import LocalStore, open_store

pytestmark = pytest.mark.integration

HOUR, DAY = 3600.0, 86400.0
ALGORITHMS = ["gcra", "fixed_window", "sliding_window"]


@pytest.fixture(params=["local", "redis"])
async def store(request):
    url = "local" if request.param == "local" else request.getfixturevalue("redis_url")
    store = open_store(url, timeout=1.0)
    yield store
    await store.close()


async def hits(store, policy, n, cost=1, key="alice", namespace="free"):
    return [await store.hit(namespace, key, policy, cost, time.monotonic()) for _ in range(n)]


class TestStoreContract:
    @pytest.mark.parametrize("algorithm", ALGORITHMS)
    async def test_admits_exactly_the_limit_then_rejects(self, store, algorithm):
        policy = make_policy(algorithm, [Rate(5, HOUR)])
        decisions = await hits(store, policy, 7)
        assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
        assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
        assert decisions[-1].retry_after > 0

    @pytest.mark.parametrize("algorithm", ALGORITHMS)
    async def test_hundreds_of_concurrent_calls_are_each_answered_exactly(self, store, algorithm):
        # 600 at once over 4 keys: the Redis store sends them as several pipelines, split
        # while others are out; every key still admits its limit and each answer is its own.
        policy = make_policy(algorithm, [Rate(100, HOUR), Rate(120, DAY)])
        keys = [f"k{i % 4}" for i in range(600)]
        decisions = await asyncio.gather(*(
            store.hit("free", key, policy, 1, time.monotonic()) for key in keys))
        for key in set(keys):
            mine = [d for k, d in zip(keys, decisions, strict=True) if k == key]
            assert sorted(d.remaining for d in mine if d.allowed) == list(range(100))
            assert sum(not d.allowed for d in mine) == 50

    async def test_keys_and_namespaces_are_counted_apart(self, store):
        policy = make_policy("gcra", [Rate(1, HOUR)])
        assert (await hits(store, policy, 1, key="a"))[0].allowed
        assert (await hits(store, policy, 1, key="b"))[0].allowed
        assert (await hits(store, policy, 1, key="a", namespace="premium"))[0].allowed
        assert not (await hits(store, policy, 1, key="a"))[0].allowed

    @pytest.mark.parametrize("algorithm", ALGORITHMS)
    async def test_weighted_cost_takes_that_many_units(self, store, algorithm):
        policy = make_policy(algorithm, [Rate(10, HOUR)])
        decisions = await hits(store, policy, 3, cost=4)
        assert [(d.allowed, d.remaining) for d in decisions] == [(True, 6), (True, 2), (False, 2)]

    @pytest.mark.parametrize("algorithm", ALGORITHMS)
    async def test_a_request_rejected_by_one_limit_consumes_nothing_from_the_others(
        self, store, algorithm
    ):
        policy = make_policy(algorithm, [Rate(6, HOUR), Rate(5, DAY)])
        assert (await hits(store, policy, 1, cost=4))[0].allowed  # left: 2 of 6, 1 of 5
        assert not (await hits(store, policy, 1, cost=2))[0].allowed  # the daily limit says no
        peek = (await hits(store, policy, 1, cost=0))[0]
        assert peek.remaining == 1  # had the rejection consumed the hourly limit, it would be 0

    async def test_a_peek_consumes_nothing(self, store):
        policy = make_policy("gcra", [Rate(2, HOUR)])
        await hits(store, policy, 3, cost=0)
        assert [d.allowed for d in await hits(store, policy, 3)] == [True, True, False]

    async def test_a_cost_above_the_limit_can_never_pass(self, store):
        decision = (await hits(store, make_policy("gcra", [Rate(2, HOUR)]), 1, cost=3))[0]
        assert not decision.allowed and decision.retry_after == float("inf")

    async def test_reset_restores_the_full_quota(self, store):
        policy = make_policy("gcra", [Rate(1, HOUR)])
        await hits(store, policy, 1)
        await store.reset("free", "alice")
        assert (await hits(store, policy, 1))[0].allowed

    async def test_shaping_delays_within_the_bound_and_rejects_beyond(self, store):
        policy = make_policy("shaping", [Rate(3600, HOUR)], max_delay=2.5)
        decisions = await hits(store, policy, 5)  # one slot per second, queue up to 2.5 s
        assert [d.allowed for d in decisions] == [True, True, True, False, False]
        assert [d.delay for d in decisions[:3]] == pytest.approx([0, 1, 2], abs=0.1)
        assert decisions[3].retry_after == pytest.approx(0.5, abs=0.1)

    async def test_fixed_window_retry_after_points_to_the_window_end(self, store):
        policy = make_policy("fixed_window", [Rate(1, 10.0)])
        decision = (await hits(store, policy, 2))[-1]
        assert not decision.allowed and 0 < decision.retry_after <= 10.0


async def test_local_store_forgets_expired_keys_as_it_grows():
    store = LocalStore()
    policy = make_policy("gcra", [Rate(1, 1.0)])
    for i in range(5000):
        await store.hit("free", f"k{i}", policy, 1, float(i))  # each key expires 1 s later
    assert len(store) < 2100


async def test_redis_decisions_use_the_server_clock_not_the_callers(redis_url):
    store = RedisStore(redis_url)
    policy = make_policy("gcra", [Rate(2, HOUR)])
    skewed = [0.0, 10 * HOUR, -5 * HOUR, 1e12]  # wildly different gateway clocks
    decisions = [await store.hit("free", "alice", policy, 1, now) for now in skewed]
    await store.close()
    assert [d.allowed for d in decisions] == [True, True, False, False]


async def test_redis_reloads_the_script_after_a_flush(redis_url):
    import redis

    store = RedisStore(redis_url)
    policy = make_policy("gcra", [Rate(3, HOUR)])
    await store.hit("free", "alice", policy, 1, 0.0)
    redis.Redis.from_url(redis_url).script_flush()
    decision = await store.hit("free", "alice", policy, 1, 0.0)
    await store.close()
    assert decision.allowed and decision.remaining == 1


async def test_redis_keeps_one_hash_tagged_key_per_identity_that_expires(redis_url):
    import redis

    store = RedisStore(redis_url)
    await store.hit("free", "ip:10.0.0.1", make_policy("gcra", [Rate(3, HOUR)]), 1, 0.0)
    await store.close()
    client = redis.Redis.from_url(redis_url)
    assert redis_key("free", "ip:10.0.0.1") == "surge:rl:{ip:10.0.0.1}:free"
    assert client.keys("surge:rl:*") == [b"surge:rl:{ip:10.0.0.1}:free"]
    assert 0 < client.pttl("surge:rl:{ip:10.0.0.1}:free") <= 2 * HOUR * 1000


def test_local_and_file_state_count_in_process():
    assert all(open_store(url).is_local for url in ("local", "memory://", "sqlite:///x.db"))


def test_unknown_store_url_is_refused():
    with pytest.raises(ValueError, match="redis://"):
        open_store("mongodb://x")
