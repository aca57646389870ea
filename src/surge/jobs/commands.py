"""The `surge worker` and `surge jobs ...` subcommands. Imports stay light here: the worker,
brokers and the user's module are imported inside the handlers.

    surge worker MODULE:queue [--queues a,b] [--concurrency N] [--broker URL]
    surge jobs stats|dead|purge (MODULE:queue | --broker URL)
    surge jobs retry (ID | --all) (MODULE:queue | --broker URL)
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

EXIT_ERROR = 1
EXIT_INVALID = 2


def register(subparsers: Any) -> None:
    worker = subparsers.add_parser(
        "worker", help="run a job worker", description="Claim and run jobs until SIGTERM."
    )
    worker.add_argument("target", metavar="MODULE:queue", help="where the Queue object lives")
    worker.add_argument("--queues", help="comma-separated queue names, highest priority first "
                        "(default: every queue the module's jobs use)")
    worker.add_argument("--concurrency", type=int, default=None,
                        help="jobs run at once (default 16)")
    worker.add_argument("--broker", help="broker URL, overriding the module's")
    worker.add_argument("--grace", default="30s",
                        help="on SIGTERM, how long running jobs may finish (default 30s)")
    worker.add_argument("--metrics", metavar="[HOST:]PORT",
                        help="serve Prometheus metrics on this address")
    worker.set_defaults(handler=run_worker)

    jobs = subparsers.add_parser("jobs", help="inspect and repair job queues")
    actions = jobs.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, handler, text in (
        ("stats", jobs_stats, "queue depth by state and the oldest job's age"),
        ("dead", jobs_dead, "dead-lettered jobs: id, name, attempts, last error"),
        ("retry", jobs_retry, "put dead jobs back in their queue"),
        ("purge", jobs_purge, "delete dead-lettered jobs"),
    ):
        action = actions.add_parser(name, help=text, description=text)
        if name == "retry":
            action.add_argument("target", nargs="*", metavar="ID | MODULE:queue",
                                help="a dead job's id and where the Queue lives")
            action.add_argument("--all", action="store_true", help="every dead job")
        else:
            action.add_argument("target", nargs="?", metavar="MODULE:queue")
        action.add_argument("--broker", help="broker URL (instead of, or overriding, MODULE:queue)")
        action.add_argument("--queue", help="only this queue")
        action.add_argument("--json", action="store_true", help="machine-readable output")
        action.set_defaults(handler=handler)


def load_queue(target: str | None, broker: str | None) -> Any:
    """The Queue at `module:attribute`, pointed at `broker` when given; or a bare Queue on
    `broker`."""
    from surge.jobs.queue import Queue

    if target is None:
        if broker is None:
            fail("give MODULE:queue or --broker URL", EXIT_INVALID)
        return _opened(Queue(broker))
    import importlib
    import os

    module_name, _, attribute = target.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        queue = getattr(importlib.import_module(module_name), attribute or "queue")
    except (ImportError, AttributeError) as exc:
        fail(f"cannot load {target}: {exc}", EXIT_INVALID)
    if not isinstance(queue, Queue):
        fail(f"{target} is a {type(queue).__name__}, not a surge.jobs.Queue", EXIT_INVALID)
    if broker:
        queue.use(broker)
    return _opened(queue)


def _opened(queue: Any) -> Any:
    """`queue` once its broker URL is known to name a broker (not yet reached)."""
    from surge.errors import BrokerError

    try:
        queue.broker  # noqa: B018 -- builds the broker from the URL
    except BrokerError as exc:
        fail(str(exc), EXIT_INVALID)
    return queue


def fail(message: str, code: int) -> NoReturn:
    print(f"surge: {message}", file=sys.stderr)
    raise SystemExit(code)


def run_worker(args: argparse.Namespace) -> int:
    import asyncio
    import os
    import signal

    from surge.jobs.worker import DEFAULT_CONCURRENCY, Worker
    from surge.masking import mask_credentials

    queue = load_queue(args.target, args.broker)
    names = args.queues.split(",") if args.queues else list(
        dict.fromkeys(fn.queue_name for fn in queue.jobs.values())
    ) or ["default"]
    worker = Worker(queue, names, concurrency=args.concurrency or DEFAULT_CONCURRENCY,
                    grace=args.grace)
    if args.metrics:
        from prometheus_client import start_http_server

        host, _, port = args.metrics.rpartition(":")
        start_http_server(int(port), addr=host or "127.0.0.1")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        print(f"surge worker {worker.name}: {worker.concurrency} slots on "
              f"{','.join(names)} via {mask_credentials(queue.url)}", file=sys.stderr, flush=True)
        try:
            await worker.run()
        finally:
            await queue.close()
        print(f"surge worker {worker.name}: stopped after {worker.processed} jobs",
              file=sys.stderr, flush=True)

    _run(main())
    if worker.abandoned_threads:
        # released sync jobs must not run on to completion in their threads (another worker
        # will run them): leave without joining the thread pool
        sys.stderr.flush()
        os._exit(0)
    return 0


def jobs_stats(args: argparse.Namespace) -> int:
    import time

    from surge.jobs.metrics import observe_queues

    async def main(queue: Any) -> dict:
        names = [args.queue] if args.queue else await queue.broker.queues()
        return await observe_queues(queue.broker, names, time.time())

    stats = _with_queue(args, main)
    if args.json:
        return _print_json(stats)
    states = ("queued", "scheduled", "running", "retrying", "unknown", "dead")
    print(f"{'queue':<20}" + "".join(f"{s:>10}" for s in states) + f"{'oldest':>10}")
    for name, row in stats.items():
        age = row["oldest_age"]
        print(f"{name:<20}" + "".join(f"{row['depth'][s]:>10}" for s in states)
              + f"{'-' if age is None else f'{age:.1f}s':>10}")
    return 0


def jobs_dead(args: argparse.Namespace) -> int:
    async def main(queue: Any) -> list:
        return await queue.broker.dead(args.queue, limit=10_000)

    dead = _with_queue(args, main)
    if args.json:
        return _print_json([record.public() for record in dead])
    for record in dead:
        error = (record.error or "").splitlines()[0] if record.error else "-"
        print(f"{record.id}  {record.name}  attempts={record.attempts}  {error}")
    print(f"{len(dead)} dead job(s)", file=sys.stderr)
    return 0


def jobs_retry(args: argparse.Namespace) -> int:
    import time

    targets = [item for item in args.target if ":" in item]
    ids = [item for item in args.target if ":" not in item]
    if len(targets) > 1 or (len(ids) != 1) == (not args.all):
        fail("jobs retry takes one job ID or --all", EXIT_INVALID)
    args.target = targets[0] if targets else None

    async def main(queue: Any) -> int:
        return await queue.broker.retry_dead(None if args.all else ids[0], time.time())

    moved = _with_queue(args, main)
    if not moved and not args.all:
        print(f"surge: no dead job has the id {ids[0]!r} (`surge jobs dead` lists them)",
              file=sys.stderr)
        return EXIT_ERROR
    print(f"{moved} job(s) back in their queue")
    return 0


def jobs_purge(args: argparse.Namespace) -> int:
    async def main(queue: Any) -> int:
        return await queue.broker.purge(args.queue)

    print(f"{_with_queue(args, main)} dead job(s) deleted")
    return 0


def _with_queue(args: argparse.Namespace, action: Any) -> Any:
    queue = load_queue(args.target, args.broker)

    async def run() -> Any:
        try:
            return await action(queue)
        finally:
            await queue.close()

    return _run(run())


def _run(coroutine: Any) -> Any:
    """Run `coroutine`; a broker that cannot be reached is one line (its URL masked)."""
    import uvloop

    from surge.errors import BrokerError

    try:
        return uvloop.run(coroutine)
    except (BrokerError, ConnectionError) as exc:
        fail(f"the broker cannot be reached: {exc}", EXIT_ERROR)


def _print_json(value: object) -> int:
    import json

    print(json.dumps(value, indent=2, default=str))
    return 0
