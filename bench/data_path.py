"""CPU cost of the gateway's own Python on the request path, without sockets or the kernel.

    .venv/bin/python bench/data_path.py [--requests 200000] [--rate-limit]

Drives one `ClientConnection` and one pooled `UpstreamConnection` with in-memory transports:
each iteration feeds a request head (as wrk sends it), takes the bytes written upstream, feeds
back a small response (as nginx sends it) and takes what the client gets. It prints
microseconds per proxied request: the part of `bench/proxy.py`'s CPU per request that is ours
rather than system calls, and the number to watch while optimising the data path. With
`--rate-limit` it measures the route with and without `rate_limit: true` (local store, one plan
far above the offered rate) and prints the overhead on the Python part alone. Issue #4's cap
of 10% is on `bench/proxy.py --rate-limit`, whose CPU per request includes the system calls."""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import uvloop
from machine import describe  # bench/machine.py, beside this script

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.memory_transport import MemoryTransport  # noqa: E402  (the tests' own)
from surge.config import parse
from surge.gateway.client import ClientConnection
from surge.gateway.server import GatewayServer
from surge.upstreams.connection import UpstreamConnection

CONFIG = """
gateway: {listen: "127.0.0.1:18999", access_log: "off"}
services:
  app: {upstreams: ["127.0.0.1:18998"]}
routes: [{prefix: /, service: app}]
"""
RATE_LIMITED = CONFIG.replace("service: app}", "service: app, rate_limit: true}") + """
rate_limits: {algorithm: gcra, key: ip, plans: {bench: [1000000/second]}, default_plan: bench}
"""
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:18999\r\n\r\n"
RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 26 Nov 2026 14:45:14 GMT\r\n"
            b"Content-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok")


async def measure(requests: int, config: str = CONFIG) -> float:
    gateway = GatewayServer(parse(config))
    service = gateway.snapshot.services["app"]
    upstream = next(iter(service.upstreams.values()))
    conn = UpstreamConnection(upstream.pool)
    upstream_side = MemoryTransport(("127.0.0.1", 18998))
    conn.connection_made(upstream_side)
    upstream.pool.conns.add(conn)
    upstream.pool.idle.append(conn)
    client = ClientConnection(gateway)
    client_side = MemoryTransport(("127.0.0.1", 40000))
    client.connection_made(client_side)
    gc.collect()
    gc.freeze()
    start = time.perf_counter()
    for _ in range(requests):
        client.data_received(REQUEST)
        conn.data_received(RESPONSE)
    elapsed = time.perf_counter() - start
    assert len(client_side.written) == requests and b" 200 " in client_side.written[-1]
    return elapsed / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--rate-limit", action="store_true",
                        help="also measure the route with `rate_limit: true` and the overhead")
    args = parser.parse_args()
    best = min(uvloop.run(measure(args.requests)) for _ in range(3))
    print(f"gateway data path: {best:.2f} us of Python per proxied request "
          f"(best of 3 x {args.requests} requests, no sockets)")
    if args.rate_limit:
        limited = min(uvloop.run(measure(args.requests, RATE_LIMITED)) for _ in range(3))
        print(f"with rate_limit: true: {limited:.2f} us, overhead "
              f"{(limited - best) / best:+.1%} of the Python part (issue #4's 10% cap is on "
              "bench/proxy.py --rate-limit, system calls included)")
    flag = " --rate-limit" if args.rate_limit else ""
    print(f"command: .venv/bin/python bench/data_path.py --requests {args.requests}{flag}")
    print(f"machine: {describe()}")


if __name__ == "__main__":
    main()
