"""The Redis rate limit store: every decision is one round trip, a Lua script that checks and
updates all of a key's limits atomically using Redis server time, so any number of gateway
processes and machines share exact limits whatever their own clocks say.

Two scripts, `gcra.lua` for the default algorithm and `decide.lua` for the others; each is
loaded once (SCRIPT LOAD), called by SHA (EVALSHA) and reloaded when Redis answers NOSCRIPT
(a restart or SCRIPT FLUSH). `gcra.lua` is written out once per policy with its limits as
constants, so its call carries just the key and the cost: encoding the limits' arguments on
every call cost the client more than the script costs Redis.

One request touches one Redis hash, `surge:rl:{<identity>}:<plan>`, whose hash tag keeps all
of an identity's state on one Cluster slot; its fields hold one entry per limit. The Lua
mirrors `algorithms` line for line.
"""

from __future__ import annotations

import asyncio
import math
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from surge.config.units import Rate
from surge.errors import StoreError
from surge.ratelimit.algorithms import EPSILON, RateLimitDecision, RateLimitPolicy, Shaping
from surge.ratelimit.store import Store

# Times in the script count from 2020-01-01 UTC (a multiple of every window length up to a
# day) so that doubles keep sub-microsecond precision.
EPOCH = 1577836800
NEVER = -1  # retry_after in the reply when the request can never pass
# Calls queued while others are out go in one pipeline per loop turn, split in two once
# there are at least twice this many, so Redis runs one half while the client reads the other.
MIN_SPLIT = 16



def _script(name: str) -> str:
    return (resources.files("surge.ratelimit").joinpath(name).read_text()
            .replace("__EPOCH__", str(EPOCH)).replace("__EPSILON__", repr(EPSILON))
            .replace("__NEVER__", str(NEVER)))


GCRA_SCRIPT = _script("gcra.lua")  # the default algorithm's, about a third of the server time
SCRIPT = _script("decide.lua")  # the window algorithms and shaping


def _field(algorithm: str, rate: Rate) -> str:
    """The hash field of one limit's state."""
    return f"{algorithm}:{rate.limit}:{rate.period:g}"


def redis_key(namespace: str, key: str) -> str:
    return f"surge:rl:{{{key}}}:{namespace}"


class RedisStore(Store):
    """Rate limit state in Redis (`redis://host:port/db`). Every call is bounded by
    `timeout` seconds; a Redis that is down or slow raises StoreError, and the next call
    after it comes back simply works (connections and the script are re-established).

    Concurrent decisions share the wire: while one call is out, the calls that arrive meanwhile
    are sent together as one pipeline (each still a single EVALSHA and a single round trip),
    which is what lets one process keep up with hundreds of concurrent requests. Many calls
    at once go as two pipelines, so Redis runs the scripts of one while the client reads the
    other's replies: sent as one, the two sides took turns idling (bench/RESULTS.md)."""

    def __init__(self, url: str, *, timeout: float = 0.25, max_connections: int = 64) -> None:
        self.url = url
        self.timeout = timeout
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout,  # waiting for a free connection is bounded too
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self.client = aioredis.Redis(connection_pool=pool)
        self._shas: dict[str, str] = {}  # per script text, once loaded
        # Per policy: its script, and the ARGV after the cost.
        self._specs: dict[RateLimitPolicy, tuple[str, tuple[Any, ...]]] = {}
        self._half = MIN_SPLIT
        self._in_flight = 0  # calls sent and not yet answered
        self._queue: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._senders: set[asyncio.Task[None]] = set()

    async def hit(
        self, namespace: str, key: str, policy: RateLimitPolicy, cost: int, now: float
    ) -> RateLimitDecision:
        script, spec = self._specs.get(policy) or self._spec(policy)
        rkey = redis_key(namespace, key)
        try:
            try:
                sha = self._shas.get(script) or await self._load(script)
                reply = await self._execute("EVALSHA", sha, 1, rkey, cost, *spec)
            except NoScriptError:  # Redis restarted or flushed its scripts
                sha = await self._load(script)
                reply = await self._execute("EVALSHA", sha, 1, rkey, cost, *spec)
        except (TimeoutError, RedisError, OSError) as exc:
            raise StoreError(f"redis rate limit store {self.url}: {exc}") from exc
        allowed, remaining, reset_us, retry_us, index, delay_us = map(int, reply.split())
        retry = math.inf if retry_us == NEVER else retry_us / 1e6
        return RateLimitDecision(bool(allowed), remaining, reset_us / 1e6, retry, index,
                                 delay_us / 1e6)

    async def _execute(self, *command: Any) -> Any:
        """One command: sent alone when nothing else is out, else batched with its peers."""
        if not self._in_flight:
            self._in_flight += 1
            try:
                return await self.client.execute_command(*command)
            finally:
                self._in_flight -= 1
        future = asyncio.get_running_loop().create_future()
        self._queue.append((command, future))
        if len(self._queue) == 1:  # first of this loop turn: flush once every peer had its say
            asyncio.get_running_loop().call_soon(self._flush)
        elif len(self._queue) >= self._half:  # half of what is usually out: send it now
            self._flush(end_of_turn=False)
        return await future

    def _flush(self, end_of_turn: bool = True) -> None:
        """Send the queued calls as one pipeline. At the end of a loop turn it also learns how
        many calls are out at once; half of that is where the next turn's queue is split."""
        batch, self._queue = self._queue, []
        if not batch:  # split off already, this turn
            return
        self._in_flight += len(batch)
        if end_of_turn:
            self._half = max(MIN_SPLIT, self._in_flight // 2)
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._senders.add(task)
        task.add_done_callback(self._senders.discard)

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        try:
            pipe = self.client.pipeline(transaction=False)
            for command, _ in batch:
                pipe.execute_command(*command)
            replies = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # the whole batch failed: each caller gets the error
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:  # cancelled (the loop is closing): so are its callers
            for _, future in batch:
                future.cancel()
            raise
        finally:
            self._in_flight -= len(batch)
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():  # its caller gave up (cancelled)
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def reset(self, namespace: str, key: str) -> None:
        try:
            await self.client.delete(redis_key(namespace, key))
        except (TimeoutError, RedisError, OSError) as exc:
            raise StoreError(f"redis rate limit store {self.url}: {exc}") from exc

    async def close(self) -> None:
        await self.client.aclose()

    async def _load(self, script: str) -> str:
        sha = self._shas[script] = await self.client.script_load(script)
        return sha

    def _spec(self, policy: RateLimitPolicy) -> tuple[str, tuple[Any, ...]]:
        """The script for the policy and its arguments after the cost, encoded once."""
        longest = max(r.period for r in policy.rates)
        max_delay = policy.max_delay if isinstance(policy, Shaping) else 0.0
        ttl_ms = math.ceil((2 * longest + max_delay) * 1000)
        if policy.algorithm == "gcra":
            fields = ", ".join(f"'{_field(policy.algorithm, rate)}'" for rate in policy.rates)
            script = (GCRA_SCRIPT.replace("__FIELDS__", fields).replace("__TTL__", str(ttl_ms))
                      .replace("__LIMITS__", ", ".join(str(r.limit) for r in policy.rates))
                      .replace("__PERIODS__", ", ".join(repr(r.period) for r in policy.rates)))
            found: tuple[str, tuple[Any, ...]] = script, ()
        else:
            limits: list[Any] = []
            for rate in policy.rates:
                limits += [_field(policy.algorithm, rate), rate.limit, repr(rate.period)]
            words = [policy.algorithm, repr(max_delay), ttl_ms, len(policy.rates), *limits]
            found = SCRIPT, (" ".join(map(str, words)).encode(),)
        self._specs[policy] = found
        return found
