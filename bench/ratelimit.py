"""Rate limiting decisions per second: Surge against the `limits` library, side by side in one
run, same machine, same Redis. One key and 100,000 keys; in-process and Redis; sequential and
100 concurrent asyncio tasks; plus a bare EVALSHA of a trivial script from Surge's own Redis
client as the ceiling of what any Redis-backed decision can reach.

    .venv/bin/python bench/ratelimit.py [--redis redis://127.0.0.1:6379/13] [--seconds 1.5]

The Redis database given is flushed between measurements: do not point it at data you keep.
Prints a markdown table and the issue's targets with the measured ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable

import limits
import redis
from limits import parse, storage, strategies
from limits.aio import storage as aio_storage
from limits.aio import strategies as aio_strategies
from machine import describe  # bench/machine.py, beside this script

from surge.ratelimit.limiter import Limiter
from surge.ratelimit.settings import RateLimitSettings

RATE = "1000/second"
KEYSETS = {"1 key": 1, "100k keys": 100_000}
TASKS = 100
STRATEGIES = {
    "fixed window": ("FixedWindowRateLimiter", "FixedWindowRateLimiter"),
    "moving window": ("MovingWindowRateLimiter", "MovingWindowRateLimiter"),
    "sliding window counter": ("SlidingWindowCounterRateLimiter",
                               "SlidingWindowCounterRateLimiter"),
}

# (backend, who, mode, keys) -> the best rate over the rounds; rounds interleave all the
# contenders so a burst of load from elsewhere on the machine does not favour one of them
results: dict[tuple[str, str, str, str], float] = {}


def key_names(n: int) -> list[str]:
    return [f"user:{i}" for i in range(n)]


def measure_sync(hit: Callable[[str], object], keys: list[str], seconds: float) -> float:
    n, count, started = len(keys), 0, time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(1000):
            hit(keys[count % n])
            count += 1
        if time.perf_counter() >= deadline:
            return count / (time.perf_counter() - started)


async def measure_async(
    hit: Callable[[str], Awaitable[object]], keys: list[str], seconds: float, tasks: int
) -> float:
    n, counts = len(keys), [0] * tasks
    started = time.perf_counter()
    deadline = started + seconds

    async def worker(w: int) -> None:
        i = w
        while True:
            for _ in range(50):
                await hit(keys[i % n])
                i += tasks
                counts[w] += 1
            if time.perf_counter() >= deadline:
                return

    await asyncio.gather(*(worker(w) for w in range(tasks)))
    return sum(counts) / (time.perf_counter() - started)


def record(backend: str, who: str, mode: str, keys: str, rate: float) -> None:
    cell = (backend, who, mode, keys)
    results[cell] = max(rate, results.get(cell, 0.0))
    print(f"  {backend:<10} {who:<36} {mode:<11} {keys:<10} {rate:>12,.0f}/s", flush=True)


def surge_limiter(store: str) -> Limiter:
    settings = RateLimitSettings.from_config({"plans": {"bench": [RATE]}, "default_plan": "bench"})
    return Limiter(settings, store, store_timeout=5.0)


def bench_in_process(seconds: float) -> None:
    item = parse(RATE)
    for keys_label, n in KEYSETS.items():
        keys = key_names(n)
        for name, (sync_cls, _) in STRATEGIES.items():
            limiter = getattr(strategies, sync_cls)(storage.MemoryStorage())
            rate = measure_sync(lambda k, lim=limiter: lim.hit(item, k), keys, seconds)
            record("in-process", f"limits {name}", "sequential", keys_label, rate)
        lim = surge_limiter("local")
        record("in-process", "surge gcra (hit_local)", "sequential", keys_label,
               measure_sync(lim.hit_local, keys, seconds))
        for name, (_, async_cls) in STRATEGIES.items():
            aio = getattr(aio_strategies, async_cls)(aio_storage.MemoryStorage())
            rate = asyncio.run(measure_async(lambda k, a=aio: a.hit(item, k), keys, seconds, TASKS))
            record("in-process", f"limits async {name}", f"{TASKS} tasks", keys_label, rate)
        lim = surge_limiter("local")
        rate = asyncio.run(measure_async(lim.hit, keys, seconds, TASKS))
        record("in-process", "surge gcra (await hit)", f"{TASKS} tasks", keys_label, rate)


def bench_redis(url: str, seconds: float) -> None:
    item = parse(RATE)
    flush = redis.Redis.from_url(url).flushdb
    limits_url = url.replace("redis://", "async+redis://", 1)
    for keys_label, n in KEYSETS.items():
        keys = key_names(n)
        for name, (sync_cls, async_cls) in STRATEGIES.items():
            flush()
            limiter = getattr(strategies, sync_cls)(storage.storage_from_string(url))
            rate = measure_sync(lambda k, lim=limiter: lim.hit(item, k), keys, seconds)
            record("redis", f"limits {name}", "sequential", keys_label, rate)
            for tasks in (1, TASKS):
                flush()
                rate = asyncio.run(_limits_async(limits_url, async_cls, item, keys, seconds, tasks))
                mode = "sequential" if tasks == 1 else f"{tasks} tasks"
                record("redis", f"limits async {name}", mode, keys_label, rate)
        for tasks in (1, TASKS):
            flush()
            surge, bare, bare_pipelined = asyncio.run(_surge_redis(url, keys, seconds, tasks))
            mode = "sequential" if tasks == 1 else f"{tasks} tasks"
            record("redis", "surge gcra", mode, keys_label, surge)
            record("redis", "bare EVALSHA 'return 1'", mode, keys_label, bare)
            record("redis", "bare EVALSHA, surge's pipelining", mode, keys_label, bare_pipelined)


async def _limits_async(url: str, cls: str, item, keys, seconds: float, tasks: int) -> float:
    store = storage.storage_from_string(url, implementation="redispy")
    limiter = getattr(aio_strategies, cls)(store)
    return await measure_async(lambda k: limiter.hit(item, k), keys, seconds, tasks)


async def _surge_redis(url: str, keys, seconds: float, tasks: int) -> tuple[float, ...]:
    lim = surge_limiter(url)
    store = lim.store
    await lim.peek("warm-up")
    surge = await measure_async(lim.hit, keys, seconds, tasks)
    sha = await store.client.script_load("return 1")

    async def bare(key: str) -> object:  # the plain client, one command per call
        return await store.client.execute_command("EVALSHA", sha, 1, key)

    async def bare_pipelined(key: str) -> object:  # the same path surge's decisions take
        return await store._execute("EVALSHA", sha, 1, key)

    figures = (surge, await measure_async(bare, keys, seconds, tasks),
               await measure_async(bare_pipelined, keys, seconds, tasks))
    await lim.close()
    return figures


def best(who: str, backend: str, mode: str, keys: str) -> float:
    return max(r for (b, w, m, k), r in results.items()
               if b == backend and w.startswith(who) and m == mode and k == keys)


def summary() -> None:
    print("\n## best of the rounds\n")
    print("| backend | contender | mode | keys | decisions/s |")
    print("|---|---|---|---|---:|")
    for (backend, who, mode, keys), rate in results.items():
        print(f"| {backend} | {who} | {mode} | {keys} | {rate:,.0f} |")
    print("\n## targets")
    for keys in KEYSETS:
        ours = best("surge", "in-process", "sequential", keys)
        theirs = max(best("limits", "in-process", "sequential", keys),
                     best("limits async", "in-process", f"{TASKS} tasks", keys))
        print(f"in-process, {keys}: surge {ours:,.0f}/s vs limits' fastest {theirs:,.0f}/s "
              f"= {ours / theirs:.2f}x (target >= 3x)")
    if not any(b == "redis" for b, *_ in results):
        return
    for keys in KEYSETS:
        ours = best("surge", "redis", f"{TASKS} tasks", keys)
        theirs = best("limits async moving", "redis", f"{TASKS} tasks", keys)
        print(f"redis, {TASKS} tasks, {keys}: surge {ours:,.0f}/s vs limits async moving "
              f"window {theirs:,.0f}/s = {ours / theirs:.2f}x (target >= 2x)")
        for mode in ("sequential", f"{TASKS} tasks"):
            ours = best("surge", "redis", mode, keys)
            bare = best("bare EVALSHA 'return 1'", "redis", mode, keys)
            piped = best("bare EVALSHA, surge's", "redis", mode, keys)
            print(f"redis, {mode}, {keys}: surge = {ours / bare:.0%} of a bare EVALSHA "
                  f"({bare:,.0f}/s), {ours / piped:.0%} of a bare EVALSHA through the same "
                  f"pipelining ({piped:,.0f}/s) (target >= 70%)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--seconds", type=float, default=1.5, help="per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="keep the best of N rounds")
    parser.add_argument("--no-redis", action="store_true", help="in-process figures only")
    args = parser.parse_args()
    print(f"# {' '.join(sys.argv)}")
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {describe()}, "
          f"limits {limits.__version__}, "
          f"redis-py {redis.__version__}, rate {RATE}")
    for round_ in range(1, args.rounds + 1):
        print(f"## round {round_}")
        bench_in_process(args.seconds)
        if not args.no_redis:
            bench_redis(args.redis, args.seconds)
    summary()
    return 0


if __name__ == "__main__":
    sys.exit(main())
