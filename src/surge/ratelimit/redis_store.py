"""The Redis rate limit store: every decision is one round trip, a Lua script that checks and
updates all of a key's limits atomically using Redis server time, so any number of gateway
processes and machines share exact limits whatever their own clocks say.

The script is loaded once (SCRIPT LOAD), called by SHA (EVALSHA) and reloaded when Redis
answers NOSCRIPT (a restart or SCRIPT FLUSH). One request touches one Redis hash,
`surge:rl:{<identity>}:<plan>`, whose hash tag keeps all of an identity's state on one Cluster
slot; its fields hold one entry per limit. The Lua mirrors `algorithms` line for line.
"""

from __future__ import annotations

import math
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from surge.errors import StoreError
from surge.ratelimit.algorithms import EPSILON, Decision, Policy, Shaping
from surge.ratelimit.store import Store

# Times in the script count from 2020-01-01 UTC (a multiple of every window length up to a
# day) so that doubles keep sub-microsecond precision.
EPOCH = 1577836800
NEVER = -1  # retry_after in the reply when the request can never pass

SCRIPT = (
    resources.files("surge.ratelimit").joinpath("decide.lua").read_text()
    .replace("__EPOCH__", str(EPOCH)).replace("__EPSILON__", repr(EPSILON))
    .replace("__NEVER__", str(NEVER))
)


def redis_key(namespace: str, key: str) -> str:
    return f"surge:rl:{{{key}}}:{namespace}"


class RedisStore(Store):
    """Rate limit state in Redis (`redis://host:port/db`). Every call is bounded by
    `timeout` seconds; a Redis that is down or slow raises StoreError, and the next call
    after it comes back simply works (connections and the script are re-established)."""

    def __init__(self, url: str, *, timeout: float = 0.25, max_connections: int = 64) -> None:
        self.url = url
        self.timeout = timeout
        self.client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            max_connections=max_connections,
        )
        self._sha: str | None = None
        self._args: dict[Policy, tuple[Any, ...]] = {}  # per policy: the script's fixed ARGV

    async def hit(
        self, namespace: str, key: str, policy: Policy, cost: int, now: float
    ) -> Decision:
        args = self._args.get(policy) or self._policy_args(policy)
        try:
            try:
                reply = await self.client.execute_command(
                    "EVALSHA", self._sha or await self._load(), 1, redis_key(namespace, key),
                    args[0], cost, *args[1:],
                )
            except NoScriptError:
                self._sha = None
                reply = await self.client.execute_command(
                    "EVALSHA", await self._load(), 1, redis_key(namespace, key),
                    args[0], cost, *args[1:],
                )
        except (TimeoutError, RedisError, OSError) as exc:
            raise StoreError(f"redis rate limit store {self.url}: {exc}") from exc
        allowed, remaining, reset_us, retry_us, index, delay_us = reply
        retry = math.inf if retry_us == NEVER else retry_us / 1e6
        return Decision(bool(allowed), remaining, reset_us / 1e6, retry, index, delay_us / 1e6)

    async def reset(self, namespace: str, key: str) -> None:
        try:
            await self.client.delete(redis_key(namespace, key))
        except (TimeoutError, RedisError, OSError) as exc:
            raise StoreError(f"redis rate limit store {self.url}: {exc}") from exc

    async def close(self) -> None:
        await self.client.aclose()

    async def _load(self) -> str:
        self._sha = await self.client.script_load(SCRIPT)
        return self._sha

    def _policy_args(self, policy: Policy) -> tuple[Any, ...]:
        longest = max(r.period for r in policy.rates)
        max_delay = policy.max_delay if isinstance(policy, Shaping) else 0.0
        ttl_ms = math.ceil((2 * longest + max_delay) * 1000)
        triples: list[Any] = []
        for rate in policy.rates:
            triples += [f"{policy.algorithm}:{rate.limit}:{rate.period:g}", rate.limit, rate.period]
        args = (policy.algorithm, max_delay, ttl_ms, len(policy.rates), *triples)
        self._args[policy] = args
        return args
