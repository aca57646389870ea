"""A runnable jobs example: two jobs and a cron entry on the embedded SQLite broker.

    cd examples/jobs
    python enqueue.py                               # enqueue a few jobs, returns at once
    surge worker tasks:queue --concurrency 8        # run them (Ctrl-C drains and stops)
    surge jobs stats tasks:queue                    # depth by state
    surge jobs dead tasks:queue                     # the job that always fails, after 3 tries
"""

from __future__ import annotations

import asyncio
import os

from surge.jobs import Queue

queue = Queue.from_url(os.environ.get("SURGE_JOBS_BROKER", "sqlite:///.surge/jobs.db"))
queue.configure("default", retries=3, backoff="1s", max_backoff="30s")


@queue.job(timeout="30s")
async def send_email(to: str, subject: str) -> str:
    await asyncio.sleep(0.1)   # talk to the mail server here
    return f"sent {subject!r} to {to}"


@queue.job(retries=2, backoff="500ms", max_backoff="2s")
def resize_image(path: str) -> None:
    """A sync job: runs in the worker's thread pool."""
    raise FileNotFoundError(path)   # always fails: ends in the dead-letter queue


@queue.cron("*/1 * * * *")
async def nightly_report() -> None:
    """Runs once a minute across every worker, however many there are."""
    print("report built")
