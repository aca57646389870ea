"""Subcommands of scaling: `surge load` (an open-model load generator to watch autoscaling
happen), `surge deploy k8s` (the scaling config rendered as Kubernetes objects) and
`surge restart SERVICE` (a rolling restart through the running gateway's admin API).
Imports stay light here; each handler imports what it runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    load = subparsers.add_parser(
        "load", help="send requests at a target rate and watch latency and replicas",
        description="Open-model load: requests leave on schedule whatever the responses.",
    )
    load.add_argument("url", help="e.g. http://127.0.0.1:8000/work")
    load.add_argument("--profile", default="100rps for 30s",
                      help="rate over time, e.g. '0->500rps over 30s, hold 60s, ->50rps'")
    load.add_argument("--duration", default=None,
                      help="stop after this long (default: the profile's length)")
    load.add_argument("--admin", default=None,
                      help="admin API (host:port or URL) to read replicas from /api/scaling")
    load.add_argument("--connections", type=int, default=64,
                      help="keep-alive connections in the pool")
    load.add_argument("--timeout", default="10s", help="a request slower than this fails")
    load.set_defaults(handler=_load)

    restart = subparsers.add_parser(
        "restart", help="rolling restart of a service's replicas (no request lost)",
        description="Each replica is replaced by a new one that is healthy before the old one "
                    "drains. Waits until done.")
    restart.add_argument("service", help="a service with 'process' or a jobs worker group")
    restart.add_argument("--admin", default=None,
                         help="admin API host:port (default: gateway.admin of ./surge.yaml)")
    restart.add_argument("--timeout", default="10m", help="give up waiting after this long")
    restart.set_defaults(handler=_restart)

    deploy = subparsers.add_parser("deploy", help="render the stack for a platform")
    targets = deploy.add_subparsers(dest="platform", metavar="PLATFORM", required=True)
    k8s = targets.add_parser(
        "k8s", help="Deployments, HorizontalPodAutoscalers and KEDA ScaledObjects",
    )
    k8s.add_argument("config", help="surge.yaml")
    k8s.add_argument("-o", "--output", default=None,
                     help="write one YAML file per object into this directory (default: stdout)")
    k8s.add_argument("--image", default="app:latest", help="container image of the app")
    k8s.set_defaults(handler=_deploy_k8s)


def _deploy_k8s(args: argparse.Namespace) -> int:
    import yaml

    from surge.config import load
    from surge.config.problems import located
    from surge.errors import ConfigError
    from surge.scaling.kubernetes import render

    class NoAliases(yaml.SafeDumper):
        """Kubernetes tools read plain YAML best: repeat shared values, no &anchors."""

        def ignore_aliases(self, data: Any) -> bool:
            return True

    try:
        # Keys `surge up` cannot run yet do not stop a rendering that does not use them.
        rendered = render(load(args.config, check_support=False), image=args.image)
    except ConfigError as exc:
        for problem in exc.problems:
            print(located(args.config, problem), file=sys.stderr)
        return 2
    for warning in rendered.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.output is None:
        yaml.dump_all(rendered.objects, sys.stdout, Dumper=NoAliases, sort_keys=False)
        return 0
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        print(f"surge deploy: {out} is a file; -o takes a directory (one YAML file per "
              "object goes there)", file=sys.stderr)
        return 2
    try:
        out.mkdir(parents=True, exist_ok=True)
        for obj in rendered.objects:
            path = out / f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
            path.write_text(yaml.dump(obj, Dumper=NoAliases, sort_keys=False))
            print(path)
    except OSError as exc:
        print(f"surge deploy: cannot write into {out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


def _load(args: argparse.Namespace) -> int:
    import uvloop

    from surge.admin.client import not_answering
    from surge.app.readiness import port_in_use
    from surge.config.units import parse_duration
    from surge.errors import ConfigError
    from surge.scaling.load import LoadRun, print_live_line, print_summary
    from surge.scaling.profile import parse_profile

    if "://" not in args.url:
        print(f"surge load: {args.url!r} has no scheme; write http://{args.url}",
              file=sys.stderr)
        return 2
    try:
        profile = parse_profile(args.profile)
        duration = parse_duration(args.duration) if args.duration else profile.duration
        timeout = parse_duration(args.timeout)
        run = LoadRun(args.url, profile, duration=duration, connections=args.connections,
                      timeout=timeout, admin=args.admin, on_second=print_live_line)
    except (ConfigError, ValueError) as exc:
        print(f"surge load: {exc}", file=sys.stderr)
        return 2
    if args.admin:
        host, port = _admin_address(args.admin)
        if not port_in_use(host, port):
            print(f"surge load: {not_answering(host, port)}", file=sys.stderr)
            return 1
    try:
        result = uvloop.run(run.run())
    except KeyboardInterrupt:  # an open-ended profile stops here: still show the summary
        result = run.result
    print_summary(result)
    return 0 if result.failed == 0 else 1


def _restart(args: argparse.Namespace) -> int:
    import asyncio
    import json
    import time
    from urllib.parse import quote

    from surge.admin.client import call, not_answering, raise_for_problem
    from surge.config import find_config, load
    from surge.config.units import parse_duration
    from surge.errors import ConfigError, SurgeError

    admin = args.admin
    try:
        if admin is None:
            path = find_config(None)
            admin = load(path, check_support=False).gateway.admin if path else "127.0.0.1:9000"
            if admin is None:
                print("surge restart: ./surge.yaml sets no gateway.admin; pass --admin "
                      "HOST:PORT", file=sys.stderr)
                return 2
        host, port = _admin_address(admin)
        name, deadline = args.service, time.monotonic() + parse_duration(args.timeout)
    except (ConfigError, ValueError) as exc:
        print(f"surge restart: {exc}", file=sys.stderr)
        return 2

    async def restart() -> dict:
        raise_for_problem(*await call(port, "POST",
                                      f"/api/services/{quote(name, safe='')}/restart", {},
                                      host=host))
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            status, body = await call(port, "GET", "/api/scaling", host=host)
            raise_for_problem(status, body)
            view = json.loads(body)["services"][name]
            if not view["restarting"]:
                return view
        raise SurgeError(f"still restarting after {args.timeout}")

    try:
        view = asyncio.run(restart())
    except ConnectionRefusedError:
        print(f"surge restart: {not_answering(host, port)}", file=sys.stderr)
        return 1
    except (SurgeError, OSError, TimeoutError) as exc:
        print(f"surge restart: {exc}", file=sys.stderr)
        return 1
    last = [e for e in view["events"] if e["kind"] in ("restarted", "restart_failed")][-1:]
    print(last[0]["message"] if last else "restart finished")
    return 0 if last and last[0]["kind"] == "restarted" else 1


def _admin_address(admin: str) -> tuple[str, int]:
    """`host:port` or `http://host:port` -> (host, port); ValueError saying what it wants."""
    host, _, port = admin.removeprefix("http://").rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected the admin API as host:port, e.g. 127.0.0.1:9000, "
                         f"got {admin!r}")
    return host.strip("[]"), int(port)
