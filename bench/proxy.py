"""Proxy overhead: the Surge gateway against nginx, same upstream, same client, same cores.

    .venv/bin/python bench/proxy.py [--duration 15] [--connections 50] [--rounds 3]
                                    [--rate-limit] [--source] [--floor] [--only nginx|surge]
                                    [--upstream-beside proxy|client] [--before SRC]

One nginx upstream answers a fixed `ok`. Then, in turn, (a) nginx as a reverse proxy (one
worker, upstream keep-alive, no access log) and (b) `surge up` with a generated surge.yaml (one
listener, `access_log: off`, one service on that upstream, p2c, one route `/`) run pinned to
core 1 while wrk (core 0) drives them: a warm-up, then the measured run. The upstream runs on
core 1 beside the proxy (`--upstream-beside proxy`, the default), so the load generator, which
measures the latencies, has a core to itself; with `--upstream-beside client` it shares core
0 with wrk, which then waits for the CPU behind it and adds its own waits to the tail.

For each: requests/s, proxy CPU microseconds per request (utime+stime of the proxy's processes
from /proc/PID/stat over the measured window, divided by requests), p50 and p99 latency, then
the Surge/nginx ratios. With `--rounds N` the proxies alternate N times and
the medians are reported, which evens out other work on a shared machine. `--rate-limit` also
runs Surge with `rate_limit: true` on the route (row `surge+rl`; one plan far above the offered
load, so it measures the check, not rejections) and prints its cost over plain Surge.
`--source` also runs Surge with its data path from source rather than compiled by mypyc
(`SURGE_PURE_PYTHON=1`, row `surge-source`). `--before SRC` also runs Surge from another
checkout's `src` (row `surge-before`, through `PYTHONPATH`), so a change is measured before and
after in one run: `git worktree add /tmp/before REV`, install it in a venv of its own (which
compiles its `src` in place), then `--before /tmp/before/src`.

Every run ends with the machine it ran on: CPU model, cores, L1d/L1i/L2/L3 sizes, kernel,
Python, nginx and wrk versions (`bench/machine.py`, read from sysfs), since the same VM type
name has given nginx 12 us and 25 us per request. Counts that timing cannot give on a shared
machine (system calls, wake-ups, instructions, simulated cache misses per request) come from
`bench/proxy_counters.py`, which needs `perf` and valgrind besides.

Needs nginx, wrk and taskset: when nginx or wrk is missing the script installs them from
Debian's packages (`apt-get install -y nginx-light wrk`, falling back to `nginx`), which
needs root. Each run works in its own bench/.work/proxy-*/, removed at the end; every child
process is stopped on exit, Ctrl-C included. When `surge up` cannot run, the surge row says
why (with the tail of its output)."""

from __future__ import annotations

import argparse
import functools
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the process helpers the integration tests use

from machine import describe  # noqa: E402  (bench/machine.py, beside this script)

from support.processes import (  # noqa: E402
    ManagedProcess,
    ProcessFailed,
    free_port,
    rss_of,
    start_gateway,
    surge_up_available,
    wait_for_port,
)

TEMPLATES = ROOT / "bench" / "nginx"
CLIENT_CORE = "0"  # wrk
PROXY_CORE = "1"   # the proxy under test (and by default the upstream)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass
class WrkFigures:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: str


@dataclass
class Result:
    proxy: str
    wrk: WrkFigures
    cpu_us_per_request: float
    rss_mib: float
    wrk_command: str


class Unavailable(Exception):
    """The proxy could not be benchmarked; the message says why."""


def ensure_tools() -> None:
    if shutil.which("nginx") and shutil.which("wrk") and shutil.which("taskset"):
        return
    if os.geteuid() != 0:
        sys.exit("bench/proxy.py needs nginx, wrk and taskset; install them as root: "
                 "apt-get install -y nginx-light wrk util-linux")
    print(">> installing nginx and wrk from Debian's packages (apt-get install nginx-light wrk)",
          flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    apt = ["apt-get", "install", "-y", "-q", "--no-install-recommends"]
    if subprocess.run([*apt, "nginx-light", "wrk"], env=env).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True)
        subprocess.run([*apt, "nginx", "wrk"], env=env, check=True)
    _stop_system_nginx()


def _stop_system_nginx() -> None:
    # The Debian package may start its own nginx on port 80; it is not ours to keep running.
    pid_file = Path("/run/nginx.pid")
    if pid_file.exists():
        subprocess.run(["nginx", "-s", "stop"], stderr=subprocess.DEVNULL)


def render(template: str, workdir: Path, **tokens: object) -> Path:
    text = (TEMPLATES / template).read_text().replace("@WORKDIR@", str(workdir))
    for key, value in tokens.items():
        text = text.replace(f"@{key.upper()}@", str(value))
    path = workdir / template
    path.write_text(text)
    return path


def start_nginx(label: str, conf: Path, workdir: Path, core: str, port: int) -> ManagedProcess:
    argv = ["taskset", "-c", core, shutil.which("nginx") or "nginx", "-p", str(workdir),
            "-c", str(conf), "-e", str(workdir / f"{label}.error.log")]
    process = ManagedProcess(label, argv, workdir)
    process.spawn()
    try:
        wait_for_port("127.0.0.1", port, timeout=10)
    except TimeoutError as exc:
        raise process.fail(str(exc)) from None
    return process


def cpu_ticks(pid: int) -> int:
    """utime+stime, in clock ticks, of `pid` and all its descendants (from /proc/PID/stat)."""
    pids = [pid] + [child.pid for child in psutil.Process(pid).children(recursive=True)]
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    return total


def wait_until_ok(url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=1.0)
            if response.status_code == 200 and response.text == "ok":
                return
            last = f"{response.status_code} {response.text[:200]!r}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise Unavailable(f"GET {url} never answered 200 ok (last: {last})")


def wrk_command(url: str, seconds: int, args: argparse.Namespace) -> list[str]:
    return ["taskset", "-c", CLIENT_CORE, "wrk", "-t1", f"-c{args.connections}",
            f"-d{seconds}s", "--latency", url]


def run_wrk(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise Unavailable(f"wrk failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def parse_wrk(text: str) -> WrkFigures:
    def latency(percent: str) -> float:
        match = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
        return float(match.group(1)) * UNITS_MS[match.group(2)] if match else float("nan")

    requests = re.search(r"(\d+) requests in", text)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors:\s+(.*)", text)
    if not (requests and rps):
        raise Unavailable(f"cannot read wrk's output:\n{text}")
    return WrkFigures(int(requests.group(1)), float(rps.group(1)), latency("50"), latency("99"),
                      int(non_2xx.group(1)) if non_2xx else 0,
                      errors.group(1).strip() if errors else "none")


def measure(proxy: str, pid: int, url: str, args: argparse.Namespace) -> Result:
    wait_until_ok(url)
    run_wrk(wrk_command(url, args.warmup, args))
    command = wrk_command(url, args.duration, args)
    before = cpu_ticks(pid)
    output = run_wrk(command)
    used_us = (cpu_ticks(pid) - before) / CLOCK_TICKS * 1e6
    figures = parse_wrk(output)
    return Result(proxy, figures, used_us / max(figures.requests, 1),
                  rss_of(pid, children=True) / 2**20, " ".join(command))


def bench_nginx(args: argparse.Namespace, workdir: Path, upstream_port: int) -> Result:
    port = free_port()
    conf = render("proxy.conf", workdir, port=port, upstream_port=upstream_port)
    with start_nginx("nginx-proxy", conf, workdir, PROXY_CORE, port) as proxy:
        return measure("nginx", proxy.pid, f"http://127.0.0.1:{port}/", args)


def bench_floor(args: argparse.Namespace, workdir: Path, upstream_port: int) -> Result:
    """The bare uvloop + httptools forwarder (bench/floor_forwarder.py): the runtime's floor."""
    port = free_port()
    floor = ManagedProcess("floor", ["taskset", "-c", PROXY_CORE, sys.executable,
                                     str(ROOT / "bench" / "floor_forwarder.py"), str(port),
                                     str(upstream_port)], workdir)
    floor.spawn()
    with floor:
        wait_for_port("127.0.0.1", port)
        return measure("floor", floor.pid, f"http://127.0.0.1:{port}/", args)


def surge_config(port: int, admin: int, upstream_port: int, rate_limit: bool) -> str:
    text = (f"gateway:\n  listen: 127.0.0.1:{port}\n  admin: 127.0.0.1:{admin}\n"
            "  access_log: off\n"
            f"services:\n  bench:\n    upstreams:\n      - 127.0.0.1:{upstream_port}\n"
            "    balance: p2c\n"
            "routes:\n  - prefix: /\n    service: bench\n")
    if rate_limit:
        text += ("    rate_limit: true\n"
                 "rate_limits:\n  algorithm: gcra\n  key: ip\n"
                 "  plans:\n    bench: [1000000/second]\n  default_plan: bench\n")
    return text


def bench_surge(args: argparse.Namespace, workdir: Path, upstream_port: int,
                rate_limit: bool = False, source: bool = False,
                before: str | None = None) -> Result:
    if not surge_up_available():
        raise Unavailable("`surge up` is not built yet (no `up` command)")
    port, admin = free_port(), free_port()
    config = surge_config(port, admin, upstream_port, rate_limit)
    env = ({"SURGE_PURE_PYTHON": "1"} if source else
           {"PYTHONPATH": before} if before else None)
    try:
        gateway = start_gateway(config, workdir, name="surge-proxy",
                                command_prefix=["taskset", "-c", PROXY_CORE], env=env)
    except ProcessFailed as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        raise Unavailable(f"{lines[0]} -- {lines[-1]}") from None
    with gateway:
        label = ("surge+rl" if rate_limit else "surge-source" if source else
                 "surge-before" if before else "surge")
        return measure(label, gateway.pid,
                       f"http://127.0.0.1:{port}/", args)


def machine() -> str:
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    return (f"{describe()}, {nginx.removeprefix('nginx version: ')}, "
            f"{' '.join(wrk.split()[:2])}")


def median_of(rows: list[Result]) -> Result:
    """Each figure's median over the rounds (figures from different rounds may be mixed)."""
    def mid(values: list[float]) -> float:
        return statistics.median(values)

    wrk = WrkFigures(int(mid([r.wrk.requests for r in rows])), mid([r.wrk.rps for r in rows]),
                     mid([r.wrk.p50_ms for r in rows]), mid([r.wrk.p99_ms for r in rows]),
                     int(mid([r.wrk.non_2xx for r in rows])),
                     "; ".join(sorted({r.wrk.socket_errors for r in rows})))
    return Result(rows[0].proxy, wrk, mid([r.cpu_us_per_request for r in rows]),
                  mid([r.rss_mib for r in rows]), rows[0].wrk_command)


def print_row(label: str, r: Result) -> None:
    w = r.wrk
    print(f"{label:<18}{w.rps:>10.0f}{r.cpu_us_per_request:>12.1f}{w.p50_ms:>9.2f}"
          f"{w.p99_ms:>9.2f}{w.non_2xx:>9}{r.rss_mib:>9.1f}  {w.socket_errors}")


def report(results: list[Result], unavailable: dict[str, str], args: argparse.Namespace,
           load_before: float) -> None:
    print(f"\n{'proxy':<18}{'req/s':>10}{'CPU us/req':>12}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'non-2xx':>9}{'RSS MiB':>9}  socket errors")
    medians: dict[str, Result] = {}
    for proxy in dict.fromkeys(r.proxy for r in results):
        rows = [r for r in results if r.proxy == proxy]
        if args.rounds > 1:
            for i, row in enumerate(rows, 1):
                print_row(f"{proxy} round {i}", row)
        medians[proxy] = median_of(rows)
        print_row(proxy + (" median" if args.rounds > 1 else ""), medians[proxy])
    for proxy, reason in unavailable.items():
        print(f"{proxy}: not available ({reason})")
    print()
    for proxy, base in [("surge", "nginx"), ("surge+rl", "nginx"), ("surge+rl", "surge"),
                        ("surge-source", "nginx"), ("surge", "surge-source"),
                        ("floor", "nginx"), ("surge", "floor"), ("surge-before", "nginx"),
                        ("surge", "surge-before")]:
        if proxy in medians and base in medians:
            s, b = medians[proxy], medians[base]
            cpu, extra = s.cpu_us_per_request, s.cpu_us_per_request - b.cpu_us_per_request
            print(f"{proxy}/{base}: CPU per request x{cpu / b.cpu_us_per_request:.2f}"
                  f" ({extra:+.1f} us), throughput x{s.wrk.rps / b.wrk.rps:.2f}, "
                  f"p99 x{s.wrk.p99_ms / b.wrk.p99_ms:.2f}")
    print("\nwrk runs:")
    for r in medians.values():
        print(f"  {r.proxy}: {r.wrk_command}")
    print(f"command: {' '.join(['.venv/bin/python', 'bench/proxy.py', *sys.argv[1:]])}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"machine: {machine()}")
    print(f"load average (1 min) before the run: {load_before:.2f}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=15, help="measured seconds per proxy")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up seconds per proxy")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rate-limit", action="store_true",
                        help="also run Surge with `rate_limit: true` on its route (surge+rl)")
    parser.add_argument("--before", metavar="SRC",
                        help="also run Surge from another checkout's `src` (compiled in place "
                             "by its own install), e.g. a worktree of the commit before a "
                             "change: surge-before, in the same run")
    parser.add_argument("--source", action="store_true",
                        help="also run Surge with its data path from source, not compiled "
                             "(SURGE_PURE_PYTHON=1): surge-source")
    parser.add_argument("--floor", action="store_true",
                        help="also run bench/floor_forwarder.py, the least a uvloop + "
                             "httptools forwarder can do, as the runtime's floor")
    parser.add_argument("--only", choices=["nginx", "surge"],
                        help="benchmark one proxy (surge includes surge+rl)")
    parser.add_argument("--upstream-beside", choices=["proxy", "client"], default="proxy",
                        help="the core the upstream nginx shares: the proxy's (default) or "
                             "wrk's")
    parser.add_argument("--rounds", type=int, default=1,
                        help="alternate the proxies this many times and report medians "
                             "(evens out other load on the machine)")
    return parser.parse_args(argv)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through every `with` below, which stop the children


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)  # even when started with SIGINT ignored (`cmd &`)
    ensure_tools()
    (ROOT / "bench" / ".work").mkdir(exist_ok=True)
    # A directory per run: two runs at once must not share config files, pid files or logs.
    with tempfile.TemporaryDirectory(prefix="proxy-", dir=ROOT / "bench" / ".work") as tmp:
        workdir = Path(tmp)
        (workdir / "tmp").mkdir()
        try:
            results, unavailable, load_before = run(args, workdir)
        except KeyboardInterrupt:
            print("\ninterrupted; every child process was stopped", file=sys.stderr)
            return 130
    report(results, unavailable, args, load_before)
    return 0


def run(args: argparse.Namespace, workdir: Path) -> tuple[list[Result], dict[str, str], float]:
    upstream_port = free_port()
    conf = render("upstream.conf", workdir, port=upstream_port)
    results: list[Result] = []
    unavailable: dict[str, str] = {}
    benches: dict[str, Callable[[argparse.Namespace, Path, int], Result]] = {
        "nginx": bench_nginx, "surge": bench_surge}
    if args.rate_limit:
        benches["surge+rl"] = functools.partial(bench_surge, rate_limit=True)
    if args.source:
        benches["surge-source"] = functools.partial(bench_surge, source=True)
    if args.before:
        benches["surge-before"] = functools.partial(bench_surge, before=args.before)
    if args.floor:
        benches["floor"] = bench_floor
    load_before = os.getloadavg()[0]
    upstream_core = PROXY_CORE if args.upstream_beside == "proxy" else CLIENT_CORE
    with start_nginx("nginx-upstream", conf, workdir, upstream_core, upstream_port):
        for round_number in range(1, args.rounds + 1):
            for proxy, bench in benches.items():
                if not proxy.startswith(args.only or "") or proxy in unavailable:
                    continue
                print(f">> {proxy} (round {round_number}/{args.rounds}): {args.warmup}s "
                      f"warm-up, {args.duration}s measured, {args.connections} connections",
                      flush=True)
                try:
                    results.append(bench(args, workdir, upstream_port))
                except (Unavailable, ProcessFailed) as exc:
                    unavailable[proxy] = str(exc)
    return results, unavailable, load_before


if __name__ == "__main__":
    sys.exit(main())
