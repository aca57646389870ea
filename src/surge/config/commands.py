"""`surge check [FILE]` (validate a surge.yaml, print every problem) and `surge schema`
(print its JSON Schema). Imports stay light: the models load inside the handlers."""

from __future__ import annotations

import argparse
import sys

EXIT_INVALID = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    check = subparsers.add_parser(
        "check", help="validate a surge.yaml and print every problem",
        description="Validate a surge.yaml; print each problem with its location and exit 2 "
                    "if there is any.",
    )
    check.add_argument("file", nargs="?", help="the config file (default: ./surge.yaml)")
    check.set_defaults(handler=run_check)
    schema = subparsers.add_parser("schema", help="print the JSON Schema of surge.yaml")
    schema.set_defaults(handler=run_schema)


def run_check(args: argparse.Namespace) -> int:
    from surge.config.loading import find_config, load
    from surge.errors import ConfigError

    path = find_config(args.file)
    if path is None:
        print("surge check: no FILE given and no ./surge.yaml here", file=sys.stderr)
        return EXIT_INVALID
    try:
        config = load(path)
    except ConfigError as error:
        for problem in error.problems:
            print(problem if problem.startswith(f"{path}:") else f"{path}: {problem}")
        return EXIT_INVALID
    for warning in config.warnings():
        print(f"{path}: warning: {warning}")
    listen = config.gateway.listen
    print(f"{path}: ok ({_count(len(config.services), 'service')}, "
          f"{_count(len(config.routes), 'route')}, "
          f"{_count(len(listen), 'listener')}: {', '.join(listen)})")
    return 0


def run_schema(args: argparse.Namespace) -> int:
    import json

    from surge.config.schema import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
