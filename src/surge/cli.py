"""The `surge` command. Each feature contributes its subcommands from its own `commands`
module (a `register(subparsers)` function); this file only assembles them and runs one.
Command modules keep their imports light and import the heavy parts inside the handler."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Feature modules that add subcommands, in the order `surge --help` lists them.
COMMAND_MODULES = (
    "surge.config.commands",   # check, schema
    "surge.app.commands",   # up
    "surge.ratelimit.commands",  # keys
    "surge.scaling.commands",   # load, restart, deploy
    "surge.jobs.commands",      # worker, jobs
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="surge", description="Keep a Python backend standing while it grows."
    )
    parser.add_argument("--version", action="version", version=_version())
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue  # that feature is not built yet
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `surge schema | head`: the reader left; nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _version() -> str:
    from surge import __version__

    return f"surge {__version__}"


if __name__ == "__main__":
    sys.exit(main())
