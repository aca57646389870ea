"""The idle keep-alive race of issue #10 (point 2), at the issue's scale: POSTs without an
`Idempotency-Key` through `surge up` to one uvicorn (`tests/support/upstream_app.py`, its
default keep-alive of 5 s unless `--keep-alive`), each after a random idle gap.

    .venv/bin/python bench/idle_race.py [--posts 1000] [--lanes 50] [--gaps 0-10]
                                        [--keep-alive S] [--seek-edge] [--seed 0]

The bound: 0 failed POSTs in 1,000 at gaps of 0-10 s, none delivered twice, and pooled reuse
above 90% when the gaps are under 1 s (`--gaps 0-1`). POSTs run in `--lanes` concurrent
lanes, each on its own route and service (its own pool to the same uvicorn), so a lane's gap
is its pooled connection's idle time; 1,000 POSTs at 0-10 s take 1000 / lanes x 5 s.
`--seek-edge` makes each lane home in on the gap at which uvicorn's idle close meets the next
POST (see `support.idle_race.Gaps`). Deliveries, and the connection each came on, are
counted at the upstream. Prints failures, duplicates and reuse; processes are stopped and
the temporary directory removed at the end."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the harness the integration test uses

from support.idle_race import race_config, read_report, run_lanes  # noqa: E402
from support.processes import start_gateway, start_upstreams, stop_all  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument("--lanes", type=int, default=50)
    parser.add_argument("--gaps", default="0-10", help="LOW-HIGH seconds, uniform")
    parser.add_argument("--keep-alive", type=float, default=None,
                        help="uvicorn's timeout_keep_alive (default: uvicorn's own, 5 s)")
    parser.add_argument("--seek-edge", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    low, _, high = args.gaps.partition("-")
    gaps = (float(low), float(high))
    per_lane = -(-args.posts // args.lanes)

    with tempfile.TemporaryDirectory(prefix="surge-idle-race-") as tmp:
        directory = Path(tmp)
        record = directory / "record.jsonl"
        env = {"UPSTREAM_RECORD_FILE": str(record)}
        if args.keep_alive is not None:
            env["UPSTREAM_KEEP_ALIVE"] = str(args.keep_alive)
        upstreams = start_upstreams(1, directory, env=env)
        try:
            gateway = start_gateway(race_config(upstreams[0].address, args.lanes), directory)
            try:
                started = time.monotonic()
                answers = asyncio.run(run_lanes(gateway.url, args.lanes, per_lane, gaps,
                                                seed=args.seed, seek_edge=args.seek_edge))
                took = time.monotonic() - started
            finally:
                stop_all([gateway])
        finally:
            stop_all(upstreams)
        report = read_report(answers, record)

    keep_alive = f"{args.keep_alive:g} s" if args.keep_alive is not None else "default (5 s)"
    print(f"idle race: {args.lanes} lanes x {per_lane} POSTs, gaps {gaps[0]:g}-{gaps[1]:g} s"
          f"{' (seeking the edge)' if args.seek_edge else ''}, uvicorn keep-alive "
          f"{keep_alive}, {took:.0f} s")
    print(f"  sent {report.sent}, failed {sum(report.failed.values())} "
          f"({dict(report.failed) or 'none'}), delivered {sum(report.deliveries.values())}, "
          f"delivered twice {report.duplicated}, pooled reuse {report.reuse_share:.1%}")
    print(f"  {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, "
          f"{platform.node()}, Python {platform.python_version()}")
    flags = f" --keep-alive {args.keep_alive:g}" if args.keep_alive is not None else ""
    flags += " --seek-edge" if args.seek_edge else ""
    print(f"command: .venv/bin/python bench/idle_race.py --posts {args.posts} --lanes "
          f"{args.lanes} --gaps {args.gaps}{flags} --seed {args.seed}")
    sys.exit(1 if report.failed or report.duplicated else 0)


if __name__ == "__main__":
    main()
