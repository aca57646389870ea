"""Autoscaling benchmark, real half: a real `surge up` running the quickstart app under the
supervisor (one replica to start, surge's default scaling rules, targets cpu 70% and p95
250 ms), and `surge load`'s open-model generator stepping from 20% to 200% of one replica's
capacity. One replica's capacity is 1000 / WORK_MS requests/s of `/work?ms=WORK_MS` (one core).

Prints: seconds from the step to the first scale-up decision (from /api/scaling's events),
seconds until the per-second p95 is back under target, the peak replica count, scaling events
during the steady phase (from `--settle` seconds after the step to the end), and failed
requests. The simulated half (and HPA's defaults for comparison) is `bench/autoscale.py`.

    .venv/bin/python bench/autoscale_real.py [--work-ms 10] [--steady 60] [--high 2.0]

On a small machine the load generator, the gateway and the replicas share the cores: 200% of
one replica's capacity needs two whole cores for the replicas alone, so read p95 with that in
mind (`--high 1.5` leaves room)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import uvloop
import yaml

from surge.scaling.load import LoadRun, Second
from surge.scaling.profile import parse_profile

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "examples" / "quickstart" / "app.py"
P95_TARGET = 0.25


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stack(directory: Path, max_replicas: int) -> tuple[Path, str, str]:
    listen, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    config = {
        "gateway": {"listen": listen, "admin": admin, "access_log": "off"},
        "services": {"app": {
            "process": {"command": f"{sys.executable} {APP} --port {{port}}", "replicas": 1},
            "health": {"path": "/healthz", "interval": "500ms", "timeout": "500ms", "rise": 1},
            "scaling": {"min": 1, "max": max_replicas,
                        "target": {"cpu_percent": 70, "p95_latency": "250ms"}},
        }},
        "routes": [{"prefix": "/", "service": "app"}],
    }
    path = directory / "surge.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, listen, admin


def scaling(admin: str) -> dict:
    with urllib.request.urlopen(f"http://{admin}/api/scaling", timeout=2) as answer:
        return json.load(answer)["services"]["app"]


def wait_ready(admin: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if any(p["state"] == "ready" for p in scaling(admin)["processes"]):
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("the stack did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-ms", type=int, default=10)
    parser.add_argument("--low", type=float, default=0.2)
    parser.add_argument("--high", type=float, default=2.0)
    parser.add_argument("--before", type=float, default=20.0, help="seconds at the low rate")
    parser.add_argument("--steady", type=float, default=60.0, help="seconds after the step")
    parser.add_argument("--settle", type=float, default=30.0,
                        help="the steady phase starts this long after the step")
    parser.add_argument("--max", type=int, default=4, help="scaling.max")
    parser.add_argument("--connections", type=int, default=256,
                        help="the generator's connections (requests due while all are busy wait "
                             "for one, and that wait counts in their latency)")
    args = parser.parse_args()
    capacity = 1000 / args.work_ms
    low, high = args.low * capacity, args.high * capacity
    profile = parse_profile(f"{low:g}rps for {args.before:g}s, ->{high:g}rps for "
                            f"{args.steady:g}s")
    with tempfile.TemporaryDirectory() as tmp:
        path, listen, admin = stack(Path(tmp), args.max)
        gateway = subprocess.Popen([sys.executable, "-m", "surge.cli", "up", str(path)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   cwd=tmp, start_new_session=True)
        try:
            wait_ready(admin)
            seconds: list[Second] = []
            run = LoadRun(f"http://{listen}/work?ms={args.work_ms}", profile,
                          duration=profile.duration, connections=args.connections, timeout=10.0,
                          admin=admin, on_second=seconds.append)
            started = time.time()
            result = uvloop.run(run.run())
            events = scaling(admin)["events"]
            with urllib.request.urlopen(f"http://{admin}/metrics", timeout=2) as answer:
                refusals = [line for line in answer.read().decode().splitlines()
                            if line.startswith(("surge_requests_failed_total",
                                                "surge_health_checks_excused_total"))]
        finally:
            os.killpg(gateway.pid, signal.SIGTERM)
            gateway.wait(30)
    report(args, capacity, started, seconds, events, result)
    if refusals:
        print("gateway counters: " + "; ".join(refusals))


def report(args: argparse.Namespace, capacity: float, started: float, seconds: list[Second],
           events: list[dict], result) -> None:  # type: ignore[no-untyped-def]
    step = started + args.before
    scale = [e for e in events if e["kind"] in ("scale_up", "scale_down")]
    ups = [e for e in scale if e["kind"] == "scale_up" and e["at"] >= step]
    decision = f"{ups[0]['at'] - step:.1f}" if ups else "never"
    exceeded, back = False, None
    for s in seconds:
        if s.at <= args.before:
            continue
        exceeded = exceeded or s.p95 > P95_TARGET
        if exceeded and s.p95 <= P95_TARGET:
            back = s.at - args.before
            break
    steady = [e for e in scale if e["at"] >= step + args.settle]
    peak = max([e["replicas_to"] for e in scale] + [1])
    print(f"# bench/autoscale_real.py --work-ms {args.work_ms} --high {args.high} --steady "
          f"{args.steady:g} --settle {args.settle:g} --connections {args.connections}  (REAL "
          f"processes; "
          f"{datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} cores, "
          f"{platform.python_implementation()} {platform.python_version()})")
    print(f"# step {args.low * capacity:.0f} -> {args.high * capacity:.0f} req/s of "
          f"/work?ms={args.work_ms} (one replica: {capacity:.0f} req/s); targets cpu 70%, "
          f"p95 {P95_TARGET * 1000:.0f}ms; surge's default scaling rules")
    back_text = "never" if back is None else f"{back:.0f}"
    print(f"decision {decision}s after the step; p95 back under target after {back_text}s; "
          f"peak {peak} replicas; {len(steady)} scaling events in the steady phase; "
          f"{result.failed} failed of {result.sent} requests")
    if result.failed:
        kinds = ", ".join(f"{kind}: {count}" for kind, count in result.errors.most_common())
        when = " ".join(f"{s.at - args.before:.0f}s:{sum(s.errors.values())}"
                        for s in seconds if s.errors)
        print(f"failures by kind: {kinds}; by second after the step: {when}")
    others = [e for e in events if e["kind"] not in ("scale_up", "scale_down", "started",
                                                       "ready")]
    if others:
        print("replica events: " + "; ".join(f"{e['at'] - step:.0f}s {e['message']}"
                                             for e in others))
    if ups:
        print(f"first scale-up: {ups[0]['message']}")
    print("events (s after step: from->to): " + " ".join(
        f"{e['at'] - step:.0f}:{e['replicas_from']}->{e['replicas_to']}" for e in scale))
    ready = [e for e in events if e["kind"] == "ready" and e["at"] >= step]
    starts = {e.get("replica"): e["at"] for e in events if e["kind"] == "started"}
    print("replicas ready (s after step, start-up s): " + " ".join(
        f"{e['at'] - step:.1f}({e['at'] - starts.get(e.get('replica'), e['at']):.1f})"
        for e in ready))
    print("answers per second after the step: " + " ".join(
        f"{s.achieved_rate:.0f}" for s in seconds if s.at > args.before)[:400])
    print("p95 per second after the step (ms): " + " ".join(
        f"{s.p95 * 1000:.0f}" for s in seconds if s.at > args.before)[:600])


if __name__ == "__main__":
    main()
