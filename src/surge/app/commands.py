"""`surge up`: start the gateway (and, for the bundled quickstart, its two app replicas) and
say where to look."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from surge import DATA_PATH

QUICKSTART = Path(__file__).resolve().parents[3] / "examples" / "quickstart"


def register(subparsers: argparse._SubParsersAction) -> None:
    up = subparsers.add_parser(
        "up", help="run the stack described by a surge.yaml",
        description="Run the gateway of FILE (default: ./surge.yaml, else the bundled "
                    "quickstart with its two app replicas).")
    up.add_argument("file", nargs="?", help="the surge.yaml to run")
    up.add_argument("--log-level", default="info",
                    choices=["debug", "info", "warning", "error"])
    up.set_defaults(handler=up_command)


def up_command(args: argparse.Namespace) -> int:
    import errno
    import functools
    import logging

    from surge.app.run import setup_logging
    from surge.config import find_config, load
    from surge.errors import ConfigError

    found = find_config(args.file)
    quickstart = found is None
    path = QUICKSTART / "surge.yaml" if found is None else found
    if quickstart and not path.exists():
        print(f"surge: no ./surge.yaml here and the quickstart is missing at {path}",
              file=sys.stderr)
        return 2
    try:
        config = load(path)
        refuse_what_cannot_start(config)
    except ConfigError as exc:
        return _refused(path, exc.problems)
    setup_logging(getattr(logging, args.log_level.upper()))
    replicas = start_quickstart_replicas(config) if quickstart else []
    on_ready = functools.partial(print_banner, path, config, quickstart)
    try:
        if config.gateway.workers > 1:
            from surge.app.workers import run_master

            return run_master(config, path, on_ready)
        from surge.app.run import run

        run(config, path, on_ready=on_ready)
        return 0
    except ConfigError as exc:  # a refusal found only while starting
        return _refused(path, exc.problems)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        # taken between the check and the bind: the bind's own words, still one line
        print(f"surge: {exc.strerror}", file=sys.stderr)
        return 2
    finally:
        for replica in replicas:
            replica.terminate()
        for replica in replicas:
            replica.wait(5)


def refuse_what_cannot_start(config) -> None:  # type: ignore[no-untyped-def]
    """ConfigError for what this machine cannot run though the file is valid: a replica
    command not on PATH, a listen or admin address another process holds."""
    from surge.config.commands import machine_problems
    from surge.errors import ConfigError
    from surge.gateway.binding import bind_problems

    addresses = {f"gateway.listen[{i}]": a for i, a in enumerate(config.gateway.listen)}
    if config.gateway.admin:
        addresses["gateway.admin"] = config.gateway.admin
    problems = machine_problems(config, refusing=True) + bind_problems(addresses)
    if problems:
        raise ConfigError(problems)


def _refused(path: Path, problems: list[str]) -> int:
    from surge.config.problems import located

    for problem in problems:
        print(located(path, problem), file=sys.stderr)
    return 2


def start_quickstart_replicas(config):  # type: ignore[no-untyped-def]
    """The quickstart's app runs as plain processes, one per configured upstream."""
    import subprocess

    from surge.app.readiness import port_in_use, wait_for_port
    from surge.scaling.process import die_with_parent

    replicas = []
    for service in config.services.values():
        for index, upstream in enumerate(service.upstreams):
            host, _, port = upstream.address.rpartition(":")
            if port_in_use(host, int(port)):
                print(f"surge: {upstream.address} is already taken (a replica left over from an "
                      "earlier run?); stop that process first", file=sys.stderr)
                raise SystemExit(2)
            name = chr(ord("a") + index)
            print(f"surge: starting quickstart replica {name} on {upstream.address}", flush=True)
            replicas.append(subprocess.Popen(
                [sys.executable, str(QUICKSTART / "app.py"), "--host", host, "--port", port,
                 "--name", name], preexec_fn=die_with_parent))
    for service in config.services.values():
        for upstream in service.upstreams:
            host, _, port = upstream.address.rpartition(":")
            wait_for_port(host, int(port), 15.0)
    return replicas


DATA_PATHS = {
    "compiled": "compiled",
    "source": "plain Python (no C compiler at install: slower)",
    "stale": "plain Python (sources newer than the build, or SURGE_PURE_PYTHON)",
}


def print_banner(path: Path, config, quickstart: bool) -> None:  # type: ignore[no-untyped-def]
    from surge.masking import mask_credentials

    g = config.gateway
    lines = [f"surge: running {path}" + (" (the bundled quickstart)" if quickstart else "")]
    for address in g.listen:
        lines.append(f"  gateway    http://{address}/")
    if g.admin:
        lines += [f"  admin API  http://{g.admin}/api/services",
                  f"  metrics    http://{g.admin}/metrics"]
    lines.append(f"  workers    {g.workers}, access log: {g.access_log}, "
                 f"data path: {DATA_PATHS[DATA_PATH]}")
    if config.state != "local":
        lines.append(f"  state      {mask_credentials(config.state)}")
    if config.jobs is not None:
        lines.append(f"  jobs       {mask_credentials(config.jobs.broker)}")
    lines.append(f"try:  curl -i http://{g.listen[0]}/")
    lines.append("stop: Ctrl-C (in-flight requests finish first)")
    print("\n".join(lines), flush=True)
