"""Background jobs, side by side on one Redis: Surge (SQLite and Redis brokers) against arq,
saq, dramatiq and Celery. For each: the enqueue rate (one producer awaiting each enqueue), the
processing rate of no-op jobs through ONE worker at its default concurrency (from the first
job's start to the last one's, so worker start-up is not counted; Celery's default is a prefork
pool of one child per core), and the enqueue-to-start latency on an idle queue (p50, p95).
`--durability` runs the issue's 10,000-job kill -9 test.

    .venv/bin/python bench/jobs.py [--jobs 10000] [--rounds 3] [--redis redis://127.0.0.1:6379/9]
    .venv/bin/python bench/jobs.py --durability

arq pins redis<6, so it is not in the `bench` extras: `pip install --no-deps arq` to include
it (it runs fine on redis-py 8); a system that is not installed is skipped.

This file is also the job module each system's worker imports (as `jobs`, with bench/ on
PYTHONPATH): BENCH_JOBS_SYSTEM says which system's jobs to define.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

SYSTEM = os.environ.get("BENCH_JOBS_SYSTEM", "")
BROKER = os.environ.get("BENCH_JOBS_BROKER", "")
OUT = Path(os.environ.get("BENCH_JOBS_DIR", "."))


def mark(enqueued_at: float | None) -> None:
    """The whole job: count itself (one byte appended to a file, so a pool of worker
    processes counts together), or note its enqueue-to-start latency."""
    if enqueued_at is not None:
        with open(OUT / "latency", "a") as out:
            out.write(f"{time.time() - enqueued_at}\n")
        return
    os.write(_counter(), b".")


def _counter() -> int:
    global _count_fd
    if _count_fd is None:
        _count_fd = os.open(OUT / "count", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    return _count_fd


_count_fd: int | None = None


# -- the job side of each system (imported by its worker) --------------------------------------

if SYSTEM.startswith("surge"):
    from surge.jobs import Queue

    surge_queue = Queue.from_url(BROKER)

    @surge_queue.job(name="noop", retries=0)
    async def surge_noop(enqueued_at: float | None = None) -> None:
        mark(enqueued_at)

    @surge_queue.job(name="record")
    def surge_record(n: int) -> None:
        """The durability job: insert its id into a table (one connection per thread)."""
        import sqlite3
        import threading

        local = surge_record.__dict__.setdefault("local", threading.local())
        if not hasattr(local, "db"):
            local.db = sqlite3.connect(OUT / "sink.db", timeout=60, isolation_level=None)
        local.db.execute("INSERT INTO seen (n) VALUES (?)", (n,))

elif SYSTEM == "arq":
    from arq.connections import RedisSettings

    async def noop(ctx: dict, enqueued_at: float | None = None) -> None:
        mark(enqueued_at)

    class ArqSettings:
        functions = [noop]
        redis_settings = RedisSettings.from_dsn(BROKER)

elif SYSTEM == "saq":
    import saq

    async def saq_noop(ctx: dict, *, enqueued_at: float | None = None) -> None:
        mark(enqueued_at)

    saq_settings = {"queue": saq.Queue.from_url(BROKER), "functions": [("noop", saq_noop)]}

elif SYSTEM == "dramatiq":
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    dramatiq.set_broker(RedisBroker(url=BROKER))

    @dramatiq.actor(actor_name="noop", max_retries=0)
    def dramatiq_noop(enqueued_at: float | None = None) -> None:
        mark(enqueued_at)

elif SYSTEM == "celery":
    from celery import Celery

    celery_app = Celery("jobs", broker=BROKER)
    celery_app.conf.update(task_ignore_result=True, worker_hijack_root_logger=False)

    @celery_app.task(name="noop")
    def celery_noop(enqueued_at: float | None = None) -> None:
        mark(enqueued_at)


# -- the driver ---------------------------------------------------------------------------------


class Producer:
    """Enqueues `noop` jobs for one system and knows how to start its worker."""

    def __init__(self, system: str, broker: str) -> None:
        self.system, self.broker = system, broker

    async def open(self) -> None:
        if self.system.startswith("surge"):
            from surge.jobs import Queue

            self.queue = Queue.from_url(self.broker)
        elif self.system == "arq":
            from arq import create_pool
            from arq.connections import RedisSettings

            self.pool = await create_pool(RedisSettings.from_dsn(self.broker))
        elif self.system == "saq":
            import saq

            self.queue = saq.Queue.from_url(self.broker)
            await self.queue.connect()
        elif self.system == "dramatiq":
            import dramatiq
            from dramatiq.brokers.redis import RedisBroker

            dramatiq.set_broker(RedisBroker(url=self.broker))
            self.actor = dramatiq.actor(lambda enqueued_at=None: None, actor_name="noop",
                                        max_retries=0)
        elif self.system == "celery":
            from celery import Celery

            self.app = Celery("bench", broker=self.broker)

    async def enqueue(self, enqueued_at: float | None = None) -> None:
        kwargs = {} if enqueued_at is None else {"enqueued_at": enqueued_at}
        if self.system.startswith("surge"):
            await self.queue.enqueue("noop", **kwargs)
        elif self.system == "arq":
            await self.pool.enqueue_job("noop", **kwargs)
        elif self.system == "saq":
            await self.queue.enqueue("noop", **kwargs)
        elif self.system == "dramatiq":
            self.actor.send(**kwargs)
        elif self.system == "celery":
            self.app.send_task("noop", kwargs=kwargs)

    async def close(self) -> None:
        if self.system == "arq":
            await self.pool.aclose()
        elif self.system in ("saq",) or self.system.startswith("surge"):
            await self.queue.disconnect() if self.system == "saq" else await self.queue.close()

    def worker_command(self) -> list[str]:
        import sys

        bin_dir = Path(sys.executable).parent
        return {
            "arq": [str(bin_dir / "arq"), "jobs.ArqSettings"],
            "saq": [str(bin_dir / "saq"), "jobs.saq_settings", "--quiet"],
            "dramatiq": [str(bin_dir / "dramatiq"), "jobs", "--processes", "1"],
            "celery": [str(bin_dir / "celery"), "-A", "jobs:celery_app", "worker",
                       "--loglevel=WARNING"],
        }.get(self.system, [sys.executable, "-m", "surge.cli", "worker", "jobs:surge_queue"])


async def measure(system: str, broker: str, jobs: int, samples: int, workdir: Path) -> dict:
    import asyncio
    import signal
    import statistics
    import subprocess

    workdir.mkdir(parents=True, exist_ok=True)
    producer = Producer(system, broker)
    await producer.open()
    started = time.perf_counter()
    for _ in range(jobs):
        await producer.enqueue()
    enqueue_rate = jobs / (time.perf_counter() - started)

    env = {**os.environ, "BENCH_JOBS_SYSTEM": system, "BENCH_JOBS_BROKER": broker,
           "BENCH_JOBS_DIR": str(workdir),
           "PYTHONPATH": str(Path(__file__).parent)}
    worker = subprocess.Popen(producer.worker_command(), env=env, cwd=workdir,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        counter = workdir / "count"
        await _wait_for(lambda: counter.exists(), 120, poll=0.002)
        first = time.time()
        await _wait_for(lambda: counter.stat().st_size >= jobs, 600, poll=0.005)
        process_rate = jobs / (time.time() - first)
        await asyncio.sleep(0.5)   # idle
        for _ in range(samples):
            await producer.enqueue(enqueued_at=time.time())
            await asyncio.sleep(0.02)
        latency_file = workdir / "latency"
        await _wait_for(lambda: latency_file.exists()
                        and len(latency_file.read_text().split()) >= samples, 60)
        latencies = sorted(float(x) * 1000 for x in latency_file.read_text().split())
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(10)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        await producer.close()
    return {
        "enqueue": enqueue_rate, "process": process_rate,
        "p50": statistics.median(latencies),
        "p95": latencies[int(len(latencies) * 0.95) - 1],
    }


async def _wait_for(condition, timeout: float, poll: float = 0.01) -> None:
    import asyncio

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the worker did not finish in time")
        await asyncio.sleep(poll)


def _row(system: str, row: dict[str, float]) -> str:
    return (f"{system:<20}{row['enqueue']:>12,.0f}{row['process']:>14,.0f}"
            f"{row['p50']:>10.2f}{row['p95']:>10.2f}")


def _installed(system: str) -> bool:
    import importlib.util

    return system.startswith("surge") or importlib.util.find_spec(system) is not None


async def compare(args) -> None:
    import platform
    import shutil
    import tempfile

    import redis

    root = Path(tempfile.mkdtemp(prefix="surge-bench-jobs-"))
    systems = {
        "surge/redis": args.redis,
        "surge/sqlite": f"sqlite:///{root}/normal.db",
        "surge/sqlite-fsync": f"sqlite:///{root}/full.db?synchronous=full",
        "arq": args.redis, "saq": args.redis, "dramatiq": args.redis, "celery": args.redis,
    }
    chosen = [name for name in systems if not args.only or name in args.only.split(",")]
    print(f"# bench/jobs.py --jobs {args.jobs} --samples {args.samples} --rounds {args.rounds}"
          f" --redis {args.redis}")
    print(f"# {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, CPython "
          f"{platform.python_version()}; one worker at its default concurrency; systems run in "
          f"turn, {args.rounds} round(s); the table is each figure's best round")
    best: dict[str, dict[str, float]] = {}
    for round_ in range(1, args.rounds + 1):
        for system in chosen:
            if not _installed(system.split("/")[0]):
                continue
            redis.Redis.from_url(args.redis).flushdb()
            row = await measure(system, systems[system], args.jobs, args.samples,
                                root / f"{system.replace('/', '-')}-{round_}")
            print(f"  round {round_} {_row(system, row)}", flush=True)
            if system in best:
                kept = best[system]
                row = {"enqueue": max(row["enqueue"], kept["enqueue"]),
                       "process": max(row["process"], kept["process"]),
                       "p50": min(row["p50"], kept["p50"]), "p95": min(row["p95"], kept["p95"])}
            best[system] = row
    print(f"{'system':<20}{'enqueue/s':>12}{'processed/s':>14}{'p50 ms':>10}{'p95 ms':>10}")
    for system in chosen:
        print(_row(system, best[system]) if system in best
              else f"{system:<20}  (not installed, skipped)")
    redis.Redis.from_url(args.redis).flushdb()
    shutil.rmtree(root, ignore_errors=True)


async def durability(args) -> None:
    """The issue's test at full size: 10,000 jobs that each insert their id into a table,
    4 workers, two killed with SIGKILL at random moments once they are busy, and restarted."""
    import asyncio
    import random
    import shutil
    import signal
    import sqlite3
    import subprocess
    import sys
    import tempfile

    import redis

    from surge.jobs import Queue

    count = args.jobs
    print(f"# bench/jobs.py --durability --jobs {count}   ({time.strftime('%Y-%m-%d')})")
    root = Path(tempfile.mkdtemp(prefix="surge-bench-durability-"))
    for name, url in (("redis", args.redis), ("sqlite", f"sqlite:///{root}/jobs.db")):
        redis.Redis.from_url(args.redis).flushdb()
        sink = sqlite3.connect(root / "sink.db", isolation_level=None)
        sink.execute("PRAGMA journal_mode=WAL")
        sink.execute("DROP TABLE IF EXISTS seen")
        sink.execute("CREATE TABLE seen (n INTEGER NOT NULL)")
        queue = Queue.from_url(url)
        for start in range(0, count, 500):
            await asyncio.gather(*(queue.enqueue("record", n)
                                   for n in range(start, min(count, start + 500))))
        env = {**os.environ, "BENCH_JOBS_SYSTEM": "surge", "BENCH_JOBS_BROKER": url,
               "BENCH_JOBS_DIR": str(root), "PYTHONPATH": str(Path(__file__).parent)}
        command = [sys.executable, "-m", "surge.cli", "worker", "jobs:surge_queue",
                   "--queues", "default", "--concurrency", "8"]
        procs = [subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL) for _ in range(4)]
        started = time.monotonic()
        while sink.execute("SELECT COUNT(*) FROM seen").fetchone()[0] < count // 10:
            await asyncio.sleep(0.05)   # all busy: kills now land on jobs in flight
        for victim in random.sample(procs, 2):
            await asyncio.sleep(random.uniform(0.1, 1.5))
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            procs.append(subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL))
        while True:
            depth = await queue.depth()
            if not any(depth[s] for s in ("queued", "scheduled", "running", "retrying")):
                break
            await asyncio.sleep(0.1)
        elapsed = time.monotonic() - started
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
            proc.wait()
        ran = [row[0] for row in sink.execute("SELECT n FROM seen")]
        missing = set(range(count)) - set(ran)
        print(f"{name:<8} {count} jobs, 4 workers, 2 killed -9: missing {len(missing)}, "
              f"ran twice {len(ran) - len(set(ran))}, dead {depth['dead']}, "
              f"{elapsed:.1f}s (the killed workers' jobs wait out their 30 s lease)")
        sink.close()
        await queue.close()
    redis.Redis.from_url(args.redis).flushdb()
    shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    import argparse
    import asyncio

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=200, help="latency samples")
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs of every system, in turn; each figure's best is kept "
                        "(a shared machine's noise only ever slows a run down)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/9",
                        help="a Redis database this benchmark may flush")
    parser.add_argument("--only", help="comma-separated systems, e.g. surge/redis,arq")
    parser.add_argument("--durability", action="store_true",
                        help="run the 10,000-job kill -9 durability test instead")
    args = parser.parse_args()
    if args.durability:
        asyncio.run(durability(args))
    else:
        asyncio.run(compare(args))


if __name__ == "__main__":
    main()
