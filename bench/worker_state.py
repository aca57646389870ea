"""What one reading of a gateway process costs the master of `workers: N`, per channel, in CPU
time.

    .venv/bin/python bench/worker_state.py [--services 4] [--upstreams 8] [--reads 300]

The master's supervisor and autoscaler read every gateway process's upstream health, in-flight
counts and latency histograms. `state` is the channel they use: the gateway process renders
`GET /api/worker/state` (JSON) and the master decodes it, adds the histograms up and merges
the upstreams. `metrics` is the alternative it replaces: the gateway process renders its
Prometheus `/metrics` text and the master parses it (before even picking the numbers out).
Both run in this process on one gateway with `--services` services of `--upstreams` upstreams
each, every route having served requests; no sockets, so the figures are the two ends' own
Python."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from surge.config import parse
from surge.gateway.server import GatewayServer
from surge.scaling.master import MasterMembership, gateway_state, merge_upstreams


def config_text(services: int, upstreams: int) -> str:
    lines = ['gateway: {listen: "127.0.0.1:18997", access_log: "off"}', "services:"]
    for s in range(services):
        addresses = ", ".join(f'"127.0.0.1:{20000 + s * 100 + u}"' for u in range(upstreams))
        lines.append(f"  s{s}: {{upstreams: [{addresses}], health: {{path: /healthz}}}}")
    lines.append("routes:")
    for s in range(services):
        lines += [f"  - {{prefix: /s{s}/, service: s{s}}}",
                  f"  - {{prefix: /s{s}/api/, service: s{s}}}"]
    return "\n".join(lines) + "\n"


def cpu_per_call(work: Callable[[], object], reads: int) -> float:
    """Microseconds of CPU per call, the best of three runs."""
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for _ in range(reads):
            work()
        best = min(best, (time.process_time() - start) / reads)
    return best * 1e6


async def measure(args: argparse.Namespace) -> None:
    gateway = GatewayServer(parse(config_text(args.services, args.upstreams)))
    for route in gateway.snapshot.routes.table.routes:
        for i in range(1000):
            route.source.stats.observe(200, 0.001 * (i % 50))
    membership = MasterMembership(master=None)

    def by_state() -> None:
        state = json.loads(json.dumps(gateway_state(gateway)))
        membership.count(7000, state)
        for service in state["upstreams"]:
            merge_upstreams([state["upstreams"][service]])

    def by_metrics() -> None:
        text, _ = gateway.metrics_text()
        list(text_string_to_metric_families(text.decode()))

    state_bytes = len(json.dumps(gateway_state(gateway)))
    metrics_bytes = len(gateway.metrics_text()[0])
    state_us, metrics_us = cpu_per_call(by_state, args.reads), cpu_per_call(by_metrics, args.reads)
    print(f"{args.services} services x {args.upstreams} upstreams, 2 routes each; "
          f"CPU per reading of one worker (both ends), best of 3 x {args.reads}")
    print(f"{'channel':<10}{'bytes':>10}{'CPU us':>10}")
    print(f"{'state':<10}{state_bytes:>10}{state_us:>10.0f}")
    print(f"{'metrics':<10}{metrics_bytes:>10}{metrics_us:>10.0f}")
    print(f"state costs {state_us / metrics_us:.2f}x the CPU of /metrics, "
          f"{state_bytes / metrics_bytes:.2f}x its bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=4)
    parser.add_argument("--upstreams", type=int, default=8)
    parser.add_argument("--reads", type=int, default=300)
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
