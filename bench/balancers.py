"""Cost of one balancer pick, the per-request decision of the proxy step.

    .venv/bin/python bench/balancers.py [--repeat 15] [--number 50000]

For each balancer and 3 and 30 upstreams (mixed weights 1-3, random in-flight counts and
latencies, no slow start): nanoseconds per `pick(now)` (the hash balancer gets a client-IP
key, hashed on every pick), and per retry pick with one upstream excluded. Best of `--repeat`
timeit runs, call overhead included (the gateway pays it too)."""

from __future__ import annotations

import argparse
import random
import sys
import timeit
from datetime import UTC, datetime

from machine import describe  # bench/machine.py, beside this script

from surge.upstreams.balancers import BALANCERS, make_balancer
from surge.upstreams.upstream import Upstream


def fleet(n: int, rng: random.Random) -> list[Upstream]:
    ups = []
    for i in range(n):
        u = Upstream(f"10.0.{i // 250}.{i % 250}:8000", weight=1 + i % 3)
        u.inflight = rng.randrange(8)
        u.ewma = rng.uniform(0.001, 0.05)
        ups.append(u)
    return ups


def nanoseconds(statement: str, scope: dict, repeat: int, number: int) -> float:
    timer = timeit.Timer(statement, globals=scope)
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--number", type=int, default=50_000)
    args = parser.parse_args()
    print(f"# {' '.join(['.venv/bin/python', *sys.argv])}")
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {describe()}")
    print(f"{'balancer':<12} {'upstreams':>9} {'ns/pick':>8} {'ns/retry pick':>14}")
    for n in (3, 30):
        rng = random.Random(42)
        ups = fleet(n, rng)
        for name in BALANCERS:
            balancer = make_balancer(name, random.Random(1))
            balancer.update(ups)
            scope = {"pick": balancer.pick, "ip": "203.0.113.7", "tried": (ups[0],)}
            key = "ip" if name == "hash" else "None"
            plain = nanoseconds(f"pick(1.0, {key})", scope, args.repeat, args.number)
            retry = nanoseconds(f"pick(1.0, {key}, tried)", scope, args.repeat, args.number)
            print(f"{name:<12} {n:>9} {plain:>8.0f} {retry:>14.0f}")


if __name__ == "__main__":
    main()
