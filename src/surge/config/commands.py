"""`surge check [FILE]` (validate a surge.yaml, print every problem) and `surge schema`
(print its JSON Schema). Imports stay light: the models load inside the handlers."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from surge.config.models import Config

EXIT_INVALID = 2


EXIT_WARNINGS = 1  # `check --strict` with warnings


def register(subparsers: argparse._SubParsersAction) -> None:
    check = subparsers.add_parser(
        "check", help="validate a surge.yaml and print every problem",
        description="Validate a surge.yaml; print each problem with its location and exit 2 "
                    "if there is any. Warnings (valid, but not what `surge up` would do as "
                    "you may expect, or a command not on PATH here) exit 0, or 1 with "
                    "--strict.",
    )
    check.add_argument("file", nargs="?", help="the config file (default: ./surge.yaml)")
    check.add_argument("--strict", action="store_true", help="exit 1 when there are warnings")
    check.set_defaults(handler=run_check)
    schema = subparsers.add_parser("schema", help="print the JSON Schema of surge.yaml")
    schema.set_defaults(handler=run_schema)


def run_check(args: argparse.Namespace) -> int:
    from surge.config.loading import find_config, load
    from surge.config.problems import located
    from surge.errors import ConfigError

    path = find_config(args.file)
    if path is None:
        print("surge check: no FILE given and no ./surge.yaml here", file=sys.stderr)
        return EXIT_INVALID
    try:
        config = load(path)
    except ConfigError as error:
        for problem in error.problems:
            print(located(path, problem))
        return EXIT_INVALID
    warnings = config.warnings() + machine_problems(config)
    for warning in warnings:
        print(located(path, f"warning: {warning}"))
    listen = config.gateway.listen
    print(f"{path}: ok ({_count(len(config.services), 'service')}, "
          f"{_count(len(config.routes), 'route')}, "
          f"{_count(len(listen), 'listener')}: {', '.join(listen)})")
    return EXIT_WARNINGS if warnings and args.strict else 0


def machine_problems(config: Config, refusing: bool = False) -> list[str]:
    """What `surge up` would refuse on this machine though the file is valid: a replica
    command not on PATH. `check` only warns (PATH differs between machines); `up` refuses."""
    from surge.errors import ConfigError
    from surge.scaling.groups import groups_from_config
    from surge.scaling.process import check_commands

    try:
        check_commands(groups_from_config(config))
    except ConfigError as error:
        why = "not on PATH here" if refusing else "not on PATH here: `surge up` would refuse it"
        return [f"{problem} ({why})" for problem in error.problems]
    return []


def run_schema(args: argparse.Namespace) -> int:
    import json

    from surge.config.schema import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
