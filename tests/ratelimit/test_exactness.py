"""Exactness under concurrency: 8 processes x 50 concurrent clients hammer one key with a
limit of 100 through the shared Redis store; exactly 100 are admitted."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from surge.ratelimit.redis_store import EPOCH

pytestmark = pytest.mark.integration

PROCESSES, CLIENTS, REQUESTS = 8, 50, 4
HAMMER = Path(__file__).with_name("hammer.py")


def redis_now(url: str) -> float:
    seconds, micros = redis.Redis.from_url(url).time()
    return seconds - EPOCH + micros / 1e6


@pytest.mark.parametrize("algorithm, rate", [("fixed_window", "100/10s"), ("gcra", "100/hour")])
def test_exactly_the_limit_is_admitted_across_processes(redis_url, algorithm, rate):
    argv = [sys.executable, str(HAMMER), redis_url, algorithm, rate, str(CLIENTS), str(REQUESTS)]
    workers = [subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for _ in range(PROCESSES)]
    try:
        for worker in workers:
            assert worker.stdout.readline().strip() == "ready"
        if algorithm == "fixed_window":
            # stay clear of a window boundary: 100/10s means 100 per aligned 10 s window
            into_window = redis_now(redis_url) % 10
            if into_window > 7:
                time.sleep(10.2 - into_window)
        for worker in workers:  # go, all at once
            worker.stdin.write("go\n")
            worker.stdin.flush()
        results = [worker.communicate(timeout=60)[0].split() for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    admitted = sum(int(r[0]) for r in results)
    errors = sum(int(r[1]) for r in results)
    assert errors == 0
    assert admitted == 100  # of 8 x 50 x 4 = 1600 attempts
