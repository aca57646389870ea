"""Jobs that the process tests run in real `surge worker` processes. The broker comes from
SURGE_TEST_JOBS_BROKER (or `--broker`); side effects go to the SQLite table `seen` in
SURGE_TEST_JOBS_SINK, so a test can count what ran, including twice."""

from __future__ import annotations

import os
import sqlite3
import threading
import time

from surge.jobs import Queue

queue = Queue.from_url(
    os.environ.get("SURGE_TEST_JOBS_BROKER", "memory://"),
    lease=os.environ.get("SURGE_TEST_JOBS_LEASE", "30s"),
)
_local = threading.local()


def sink() -> sqlite3.Connection:
    if not hasattr(_local, "db"):
        _local.db = sqlite3.connect(os.environ["SURGE_TEST_JOBS_SINK"], timeout=30,
                                    isolation_level=None)
        _local.db.execute("PRAGMA synchronous=NORMAL")   # the sink need not survive power loss
    return _local.db


def create_sink(path: str) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS seen (n INTEGER NOT NULL, at REAL NOT NULL)")
    db.close()


@queue.job(name="record")
def record(n: int) -> None:
    sink().execute("INSERT INTO seen (n, at) VALUES (?, ?)", (n, time.time()))


@queue.job(name="slow")
def slow(n: int, seconds: float) -> None:
    time.sleep(seconds)
    record(n)


@queue.job(name="crash", retries=1, backoff="50ms", max_backoff="100ms")
def crash() -> None:
    record(-1)
    os._exit(3)   # a poison job: takes its worker process down with it
