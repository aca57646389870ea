"""Where a proxied request's CPU goes, counted rather than timed where the machine allows it.

    .venv/bin/python bench/proxy_counters.py [--tool sched|record|callgrind]
                 [--proxies nginx,surge,surge-source,floor] [--upstream-beside proxy|client]
                 [--duration 8] [--connections 50] [--evict-every US] [--l1i KIB]

The same set-up as bench/proxy.py (one nginx upstream answering `ok`, the proxy pinned to core
1, wrk alone on core 0, the upstream beside the proxy or beside wrk), but instead of timing it
counts, per request wrk completed, over a measured wrk run after a warm-up:

- `--tool sched` (default): the proxy's system calls by name, context switches (its own
  sleeps: voluntary; preemptions: involuntary), wake-ups it does of other tasks (the peer
  process on the other end of a socket), page faults, and utime/stime. From `perf stat`'s
  software events and syscall tracepoints on the proxy's process (no hardware counters
  needed; they are not there on most VMs), and /proc/PID/stat. The tracepoints cost little,
  so the proxy batches as it does untraced (strace -c, which stops the process on every call,
  would change exactly that). With `--evict-every US`, a neighbour on the proxy's core copies
  a buffer larger than the L2 (`--evict-mib`, 4) every US microseconds during the measured
  run: what a miss costs then rises, as on a core shared with a busy kernel or other tenants,
  and the user time per request shows how each proxy's cost grows with it.
- `--tool record`: the share of the proxy's CPU samples by object (kernel, libpython, the
  mypyc module, httptools, uvloop, libc; nginx), from `perf record -e cpu-clock`, as in the
  shared note's profile; not per request but comparable across machines.
- `--tool callgrind`: the proxy runs under valgrind's callgrind with its cache simulator
  (`--cache-sim=yes`, caches set to this machine's per-core L1i, L1d and L2 from sysfs, the
  L2 standing in for valgrind's "last level": the L3 is shared by the cores, and user space
  alone hardly misses even the L2). `--l1i KIB` simulates a smaller L1i. Counters are zeroed
  after the warm-up and dumped after the measured run (`callgrind_control -z`, `-d`), so
  start-up is not counted. It prints user-space
  instructions (Ir), data reads and writes (Dr, Dw), and simulated misses per request: I1mr,
  D1mr, D1mw in the L1s, ILmr, DLmr, DLmw in the L2 (valgrind's "LL"). nginx runs with
  `master_process off` there, so valgrind sees the process that does the work. The simulation
  is of user space alone: the kernel's own use of the caches on every system call, which
  evicts user lines too, is not in it. Each dump is kept as bench/.work/callgrind.KIND.out
  for `callgrind_annotate`.

Needs nginx, wrk, taskset, perf (Debian: `apt-get install -y nginx-light wrk linux-perf`) and,
for `--tool callgrind`, valgrind (`apt-get install -y valgrind`); run as root for perf's
tracepoints. Figures are per request wrk counted; under callgrind the proxy runs 20-50 times
slower, so its requests arrive in bigger batches per wake-up than untraced: its instruction
counts are exact per request, its cache misses an estimate of the steady state.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from machine import CACHE_DIR, describe  # noqa: E402
from proxy import (  # noqa: E402
    CLIENT_CORE,
    PROXY_CORE,
    ensure_tools,
    parse_wrk,
    render,
    run_wrk,
    start_nginx,
    surge_config,
    wait_until_ok,
)

from support.processes import (  # noqa: E402
    ManagedProcess,
    free_port,
    start_gateway,
    wait_for_port,
)

SYSCALLS = ["read", "recvfrom", "write", "writev", "sendto", "epoll_wait", "epoll_pwait",
            "epoll_ctl", "getsockopt", "setsockopt", "accept4", "close", "clock_gettime"]
EVENTS = ["task-clock", "context-switches", "cpu-migrations", "page-faults",
          "sched:sched_wakeup", "sched:sched_waking", "raw_syscalls:sys_enter",
          *[f"syscalls:sys_enter_{name}" for name in SYSCALLS]]
CLOCK_TICKS = 100
# A neighbour on the proxy's core that, every pause, copies a buffer larger than the L2, so the
# proxy finds its lines evicted as it would beside a busy kernel or other tenants' processes.
EVICTOR = """
import sys, time
size, pause = int(sys.argv[1]) << 20, float(sys.argv[2]) / 1e6
source, target = bytearray(size), bytearray(size)
while True:
    target[:] = source
    time.sleep(pause)
"""


@contextmanager
def proxy_process(kind: str, workdir: Path, upstream_port: int,
                  valgrind: list[str]) -> Iterator[tuple[int, int]]:
    """Start `kind` on the proxy's core (under `valgrind` if given); yield (pid, port)."""
    port = free_port()
    taskset = ["taskset", "-c", PROXY_CORE]
    if kind == "nginx":
        conf = render("proxy.conf", workdir, port=port, upstream_port=upstream_port)
        if valgrind:  # one process doing the work, which valgrind follows
            conf.write_text(conf.read_text().replace("master_process on;", "master_process off;"))
        argv = [*taskset, *valgrind, shutil.which("nginx") or "nginx", "-p", str(workdir),
                "-c", str(conf), "-e", str(workdir / "proxy.error.log")]
        with ManagedProcess("nginx-proxy", argv, workdir) as process:
            process.spawn()
            wait_for_port("127.0.0.1", port, timeout=120)
            yield _worker_of(process.pid), port
    elif kind == "floor":
        argv = [*taskset, *valgrind, sys.executable, str(ROOT / "bench" / "floor_forwarder.py"),
                str(port), str(upstream_port)]
        with ManagedProcess("floor", argv, workdir) as process:
            process.spawn()
            wait_for_port("127.0.0.1", port, timeout=120)
            yield process.pid, port
    else:
        config = surge_config(port, free_port(), upstream_port, rate_limit=False)
        source = {"SURGE_PURE_PYTHON": "1"} if kind == "surge-source" else None
        with start_gateway(config, workdir, name=kind, timeout=300, env=source,
                           command_prefix=[*taskset, *valgrind]) as gateway:
            yield gateway.pid, port


def _worker_of(pid: int) -> int:
    """nginx's worker when a master runs (the process that proxies), else nginx itself."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(children[0]) if children else pid


def wrk(port: int, seconds: int, connections: int) -> list[str]:
    return ["taskset", "-c", CLIENT_CORE, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
            "--latency", f"http://127.0.0.1:{port}/"]


def cpu_of(pid: int) -> tuple[int, int]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def sched_counts(kind: str, pid: int, port: int, args: argparse.Namespace) -> dict[str, float]:
    run_wrk(wrk(port, 3, args.connections))
    out = Path(tempfile.mktemp(prefix="perf-stat-", dir=args.workdir))
    perf = subprocess.Popen(["perf", "stat", "-x", ",", "-o", str(out), "-e", ",".join(EVENTS),
                             "-p", str(pid)], stderr=subprocess.DEVNULL)
    evictor = subprocess.Popen(["taskset", "-c", PROXY_CORE, sys.executable, "-c", EVICTOR,
                                str(args.evict_mib), str(args.evict_every)]) \
        if args.evict_every else None
    try:
        user0, sys0 = cpu_of(pid)
        figures = parse_wrk(run_wrk(wrk(port, args.duration, args.connections)))
        user1, sys1 = cpu_of(pid)
    finally:
        if evictor:
            evictor.kill()
            evictor.wait()
    perf.send_signal(2)
    perf.wait(timeout=30)
    n = figures.requests
    counts: dict[str, float] = {"requests": n, "req/s": figures.rps,
                                "user us": (user1 - user0) / CLOCK_TICKS * 1e6 / n,
                                "system us": (sys1 - sys0) / CLOCK_TICKS * 1e6 / n}
    for line in out.read_text().splitlines():
        parts = line.split(",")
        if len(parts) > 3 and parts[0].replace(".", "").isdigit():
            name = parts[2].removeprefix("syscalls:sys_enter_").removeprefix("sched:")
            counts[name] = float(parts[0]) / n
    counts["task-clock"] = counts.get("task-clock", 0.0) * 1000  # ms/request -> us
    return counts


def record_shares(kind: str, pid: int, port: int,
                  args: argparse.Namespace) -> dict[str, float]:
    """Share of the proxy's CPU samples by object (kernel, libpython, ...), as the shared
    note's profile gave them: `perf record -e cpu-clock` (a software clock, no hardware
    counters needed) over the measured run, `perf report --sort dso`."""
    run_wrk(wrk(port, 3, args.connections))
    data = args.workdir / f"perf.{kind}.data"
    perf = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "2999", "-o",
                             str(data), "-p", str(pid)], stderr=subprocess.DEVNULL)
    figures = parse_wrk(run_wrk(wrk(port, args.duration, args.connections)))
    perf.send_signal(2)
    perf.wait(timeout=60)
    text = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--sort", "dso"],
                          capture_output=True, text=True).stdout
    shares: dict[str, float] = {"requests": figures.requests, "req/s": figures.rps}
    for match in re.finditer(r"^\s+([\d.]+)%\s+(\S+)", text, re.M):
        name = match.group(2).strip("[]").split(".cpython")[0].split(".so")[0]
        name = "kernel" if name.startswith("kernel") else "mypyc" if "mypyc" in name else name
        shares[f"% {name[:11]}"] = float(match.group(1))
    return shares


def valgrind_argv(workdir: Path, l1i_kib: int | None) -> list[str]:
    def cache(index: str, kib: int | None = None) -> str:
        d = CACHE_DIR / index
        size = (kib or int((d / "size").read_text().strip().rstrip("K"))) * 1024
        ways = (d / "ways_of_associativity").read_text().strip()
        line = (d / "coherency_line_size").read_text().strip()
        return f"{size},{ways},{line}"

    levels = {(p / "level").read_text().strip() + (p / "type").read_text().strip()[0]: p.name
              for p in CACHE_DIR.glob("index*")}
    return ["valgrind", "--tool=callgrind", "--cache-sim=yes",
            f"--I1={cache(levels['1I'], l1i_kib)}", f"--D1={cache(levels['1D'])}",
            f"--LL={cache(levels['2U'])}", f"--callgrind-out-file={workdir}/callgrind.%p"]


def callgrind_counts(kind: str, pid: int, port: int,
                     args: argparse.Namespace) -> dict[str, float]:
    run_wrk(wrk(port, 10, args.connections))  # slow under valgrind: a longer warm-up
    subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
    figures = parse_wrk(run_wrk(wrk(port, args.duration, args.connections)))
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    dumps = sorted(args.workdir.glob(f"callgrind.{pid}.*"), key=lambda p: p.stat().st_mtime)
    dump = shutil.copy(dumps[-1], ROOT / "bench" / ".work" / f"callgrind.{kind}.out")
    print(f"   kept {dump} (callgrind_annotate it for functions)", flush=True)
    text = subprocess.run(["callgrind_annotate", "--threshold=100", str(dump)],
                          capture_output=True, text=True).stdout
    text = re.sub(r"\(\s*[\d.]+%\)", "", text)  # newer valgrinds add shares in brackets
    n = figures.requests
    events = re.search(r"^Events recorded:\s+(.+)$", text, re.M)
    totals = re.search(r"^([\d,\s]+)PROGRAM TOTALS", text, re.M)
    if not (events and totals):
        raise SystemExit(f"cannot read callgrind_annotate's output for {dump}")
    names = events.group(1).split()
    values = [int(v.replace(",", "")) for v in totals.group(1).split()]
    counts: dict[str, float] = {"requests": n, "req/s": figures.rps}
    counts.update({name: value / n for name, value in zip(names, values, strict=True)})
    counts["L1 misses"] = counts["I1mr"] + counts["D1mr"] + counts["D1mw"]
    counts["L2 misses"] = counts["ILmr"] + counts["DLmr"] + counts["DLmw"]
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tool", choices=["sched", "callgrind", "record"], default="sched")
    parser.add_argument("--proxies", default="nginx,surge,floor",
                        help="any of nginx, surge, surge-source (its data path not compiled: "
                             "SURGE_PURE_PYTHON=1), floor (bench/floor_forwarder.py)")
    parser.add_argument("--upstream-beside", choices=["proxy", "client"], default="proxy")
    parser.add_argument("--duration", type=int, default=8, help="measured seconds per proxy")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--l1i", type=int, metavar="KIB",
                        help="callgrind: simulate an L1i of this size instead of the machine's "
                             "(what is left of it when other code, the kernel's, shares it)")
    parser.add_argument("--evict-every", type=int, metavar="US", default=0,
                        help="sched: during the measured run, a neighbour on the proxy's core "
                             "copies --evict-mib MiB (evicting the L2) every US microseconds")
    parser.add_argument("--evict-mib", type=int, default=4)
    args = parser.parse_args()
    ensure_tools()
    needed = ["valgrind", "callgrind_control"] if args.tool == "callgrind" else ["perf"]
    if missing := [tool for tool in needed if not shutil.which(tool)]:
        sys.exit(f"needs {', '.join(missing)}: apt-get install -y "
                 f"{'valgrind' if args.tool == 'callgrind' else 'linux-perf'}")
    (ROOT / "bench" / ".work").mkdir(exist_ok=True)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="counters-", dir=ROOT / "bench" / ".work") as tmp:
        args.workdir = Path(tmp)
        (args.workdir / "tmp").mkdir()
        upstream_port = free_port()
        conf = render("upstream.conf", args.workdir, port=upstream_port)
        core = PROXY_CORE if args.upstream_beside == "proxy" else CLIENT_CORE
        valgrind = valgrind_argv(args.workdir, args.l1i) if args.tool == "callgrind" else []
        with start_nginx("nginx-upstream", conf, args.workdir, core, upstream_port):
            for kind in args.proxies.split(","):
                print(f">> {kind}: {args.tool}", flush=True)
                with proxy_process(kind, args.workdir, upstream_port, valgrind) as (pid, port):
                    wait_until_ok(f"http://127.0.0.1:{port}/", timeout=120)
                    measure = {"sched": sched_counts, "callgrind": callgrind_counts,
                               "record": record_shares}[args.tool]
                    results[kind] = measure(kind, pid, port, args)
    report(results, args)
    return 0


def report(results: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    kinds = list(results)
    names = [name for name in dict.fromkeys(k for r in results.values() for k in r)
             if any(r.get(name, 0) >= 0.005 for r in results.values())]
    title = "% of samples" if args.tool == "record" else "per request"
    print(f"\n{title:<13}{''.join(f'{kind:>14}' for kind in kinds)}")
    for name in names:
        cells = "".join(f"{results[kind].get(name, 0.0):>14,.2f}" if results[kind].get(
            name, 0.0) < 100 else f"{results[kind].get(name, 0.0):>14,.0f}" for kind in kinds)
        print(f"{name:<13}{cells}")
    print(f"command: .venv/bin/python bench/proxy_counters.py {' '.join(sys.argv[1:])}")
    print(f"machine: {describe()}")


if __name__ == "__main__":
    sys.exit(main())
