"""`surge keys create | list | revoke | set-plan`: API keys in the state store named by
surge.yaml (`./surge.yaml` or `--config FILE`). Imports stay light; the work is done in the
handlers."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

EXIT_ERROR = 1
EXIT_INVALID = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    keys = subparsers.add_parser("keys", help="create, list, revoke and re-plan API keys")
    keys.set_defaults(handler=lambda args: keys.print_help() or EXIT_INVALID)
    sub = keys.add_subparsers(dest="keys_command", metavar="ACTION")

    def action(name: str, help: str, handler: Any) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help, description=help)
        parser.add_argument("--config", metavar="FILE",
                            help="the surge.yaml naming the state store (default: ./surge.yaml)")
        parser.set_defaults(handler=handler)
        return parser

    create = action("create", "create a key and print it (once)", run_create)
    create.add_argument("--name", required=True, help="who or what the key is for")
    create.add_argument("--plan", required=True, help="a plan from rate_limits.plans")
    listing = action("list", "list keys (never the keys themselves)", run_list)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    revoke = action("revoke", "revoke a key: it gets 401 from then on", run_revoke)
    revoke.add_argument("key", metavar="KEY|ID|NAME")
    set_plan = action("set-plan", "move a key to another plan", run_set_plan)
    set_plan.add_argument("key", metavar="KEY|ID|NAME")
    set_plan.add_argument("plan", metavar="PLAN")


def run_create(args: argparse.Namespace) -> int:
    def work(store: Any, plans: list[str]) -> int:
        if not _plan_known(args.plan, plans):
            return EXIT_INVALID
        raw, info = store.create(args.name, args.plan)
        print(raw)
        print(f"created {info.id} ({info.name}, plan {info.plan}); the key above is shown "
              "only this once", file=sys.stderr)
        return 0

    return _with_key_store(args, work)


def run_list(args: argparse.Namespace) -> int:
    import json
    import time

    def work(store: Any, plans: list[str]) -> int:
        keys = store.list()
        if args.json:
            for info in keys:
                print(json.dumps({k: v for k, v in info.to_dict().items() if k != "key_hash"}))
            return 0
        print(f"{'ID':<21} {'NAME':<20} {'PLAN':<12} {'CREATED (UTC)':<20} STATUS")
        for info in keys:
            created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(info.created_at))
            status = "active" if info.active else "revoked"
            print(f"{info.id:<21} {info.name:<20} {info.plan:<12} {created:<20} {status}")
        return 0

    return _with_key_store(args, work)


def run_revoke(args: argparse.Namespace) -> int:
    def work(store: Any, plans: list[str]) -> int:
        info = store.revoke(_key_ref(store, args.key))
        print(f"revoked {info.id} ({info.name})")
        return 0

    return _with_key_store(args, work)


def run_set_plan(args: argparse.Namespace) -> int:
    def work(store: Any, plans: list[str]) -> int:
        if not _plan_known(args.plan, plans):
            return EXIT_INVALID
        info = store.set_plan(_key_ref(store, args.key), args.plan)
        print(f"{info.id} ({info.name}) is now on plan {info.plan}")
        return 0

    return _with_key_store(args, work)


def _key_ref(store: Any, ref: str) -> str:
    """`ref` as the store takes it: the key itself, its id, or the name of one key (an active
    one first: a name is reused once its old key is revoked). LookupError when a name is
    on several keys, KeyError when nothing matches."""
    from surge.ratelimit.keys import PREFIX

    try:
        store.get(ref)
        return ref
    except KeyError:
        if ref.startswith(PREFIX):  # a key, not a name (and never echoed)
            raise
    named = [info for info in store.list() if info.name == ref]
    candidates = [info for info in named if info.active] or named
    if not candidates:
        raise KeyError(ref)
    if len(candidates) > 1:
        raise LookupError(f"{len(candidates)} keys are named {ref!r} "
                          f"({', '.join(info.id for info in candidates)}); give one id")
    return candidates[0].id


def _with_key_store(args: argparse.Namespace, work: Callable[[Any, list[str]], int]) -> int:
    """Load the config, open its key store, run `work(store, plan_names)`; the expected
    failures (no or bad config, unknown key, store down) become a message and a status."""
    from pathlib import Path

    from surge.config import find_config, load
    from surge.config.problems import located
    from surge.errors import ConfigError, StoreError
    from surge.ratelimit.keys import open_key_store

    path = find_config(args.config)
    if path is None:
        print("surge keys: no ./surge.yaml here; pass --config FILE", file=sys.stderr)
        return EXIT_INVALID
    store = None
    try:
        config = load(path, check_support=False)
        data_dir = Path(config.data_dir)
        if not data_dir.is_absolute():  # relative to the config file, like every path in it
            data_dir = path.parent / data_dir
        store = open_key_store(config.state, str(data_dir))
        return work(store, list(config.rate_limits.plans))
    except ConfigError as error:
        print("\n".join(located(path, p) for p in error.problems), file=sys.stderr)
        return EXIT_INVALID
    except KeyError as error:
        print(f"surge keys: no such key: {error.args[0]} (give the key, its id or its name; "
              "`surge keys list` shows them)", file=sys.stderr)
        return EXIT_ERROR
    except LookupError as error:  # a name on several keys
        print(f"surge keys: {error}", file=sys.stderr)
        return EXIT_INVALID
    except StoreError as error:
        print(f"surge keys: {error}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        if store is not None:
            store.close()


def _plan_known(plan: str, plans: list[str]) -> bool:
    from surge.ratelimit.settings import unknown_plan

    if plan in plans:
        return True
    print(f"surge keys: {unknown_plan(plan, dict.fromkeys(plans))}", file=sys.stderr)
    return False
