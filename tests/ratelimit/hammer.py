"""One hammering process for the exactness test: CLIENTS concurrent asyncio clients, each
sending REQUESTS hits on one key through a Limiter on the shared Redis store. Prints "ready"
once connected, waits for a line on stdin, hammers, then prints how many were admitted.

    python hammer.py REDIS_URL ALGORITHM RATE CLIENTS REQUESTS
"""

from __future__ import annotations

import asyncio
import sys

from surge.ratelimit.limiter import Limiter
from surge.ratelimit.settings import RateLimitSettings


async def main(url: str, algorithm: str, rate: str, clients: int, requests: int) -> None:
    settings = RateLimitSettings.from_config(
        {"plans": {"shared": [rate]}, "default_plan": "shared", "algorithm": algorithm}
    )
    limiter = Limiter(settings, url, store_timeout=5.0)
    await limiter.peek("warm-up")  # connect and load the script before the start line
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    async def client() -> int:
        return sum([(await limiter.hit("the-one-key")).allowed for _ in range(requests)])

    admitted = sum(await asyncio.gather(*(client() for _ in range(clients))))
    print(admitted, limiter.store_errors, flush=True)
    await limiter.close()


if __name__ == "__main__":
    url, algorithm, rate, clients, requests = sys.argv[1:6]
    asyncio.run(main(url, algorithm, rate, int(clients), int(requests)))
