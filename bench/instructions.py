"""User-space instructions per proxied request, counted by callgrind: the data path's cost in a
figure that does not move with the machine's load (issues #10 and #11 cap its growth at 2-3%).

    .venv/bin/python bench/instructions.py [--small 1000] [--large 3000] [--rate-limit]

Runs `bench/data_path.py`'s `measure()` (in-memory transports, no sockets) under
`valgrind --tool=callgrind` once with `--small` and once with `--large` requests, one process
each with `PYTHONHASHSEED=0`, and divides the difference of the two totals by the difference of
the counts, so start-up and imports cancel out. Needs valgrind (`apt-get install valgrind`)."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUN = """
import sys, uvloop
sys.path.insert(0, {here!r})
import data_path
config = data_path.RATE_LIMITED if {rate_limit} else data_path.CONFIG
uvloop.run(data_path.measure({requests}, config))
"""


def total_instructions(requests: int, rate_limit: bool) -> int:
    """Callgrind's total `Ir` for one process proxying `requests` requests."""
    with tempfile.TemporaryDirectory() as temp:
        out = Path(temp) / "callgrind.out"
        code = RUN.format(here=str(HERE), requests=requests, rate_limit=rate_limit)
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                        sys.executable, "-c", code], check=True, capture_output=True,
                       env={**os.environ, "PYTHONHASHSEED": "0"})
        found = re.search(r"^summary:\s+(\d+)", out.read_text(), re.MULTILINE)
        if found is None:
            raise SystemExit(f"no summary line in callgrind's output {out}")
        return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=3000)
    parser.add_argument("--rate-limit", action="store_true",
                        help="the route with `rate_limit: true` (bench/data_path.py's)")
    args = parser.parse_args()
    small = total_instructions(args.small, args.rate_limit)
    large = total_instructions(args.large, args.rate_limit)
    per_request = (large - small) / (args.large - args.small)
    print(f"{per_request:,.0f} user-space instructions per proxied request "
          f"(callgrind, {args.large} minus {args.small} requests)")
    flag = " --rate-limit" if args.rate_limit else ""
    print(f"command: .venv/bin/python bench/instructions.py --small {args.small} "
          f"--large {args.large}{flag}")


if __name__ == "__main__":
    main()
