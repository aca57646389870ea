"""Retry rules (pure, `now` passed in): the retry budget that keeps retries from multiplying an
overload, and the jittered backoff between tries.

The budget allows retries up to `percent` of the requests of the last `window` seconds, with a
floor of `min_retries` in that window (as Envoy's `min_retry_concurrency`) so a quiet service
can still retry at all."""

from __future__ import annotations

import random
from collections import deque

WINDOW = 10.0
MIN_RETRIES = 3


class RetryBudget:
    """Counts nothing per request itself: the service keeps a plain running total of its
    requests, and `tick` (about once a second, off the data path) marks where that total stood,
    so the window's share is one subtraction when a retry is asked for."""

    __slots__ = ("percent", "window", "min_retries", "marks", "retries", "exhausted")

    def __init__(self, percent: float, window: float = WINDOW,
                 min_retries: int = MIN_RETRIES) -> None:
        self.percent = percent
        self.window = window
        self.min_retries = min_retries
        self.marks: deque[tuple[float, int, int]] = deque()  # (when, requests, retries)
        self.retries = 0    # retries granted, all time
        self.exhausted = 0  # retries refused, all time (a metric)

    def tick(self, now: float, requests: int) -> None:
        """Mark the service's running request total; forget marks older than the window."""
        marks = self.marks
        marks.append((now, requests, self.retries))
        while len(marks) > 1 and marks[1][0] <= now - self.window:
            marks.popleft()

    def try_retry(self, requests: int) -> bool:
        """Spend one retry if retries in the window stay within their share of requests."""
        _, base_requests, base_retries = self.marks[0] if self.marks else (0.0, 0, 0)
        allowed = max(self.min_retries, (requests - base_requests) * self.percent / 100.0)
        if self.retries - base_retries + 1 > allowed:
            self.exhausted += 1
            return False
        self.retries += 1
        return True


def backoff(base: float, attempt: int, rng: random.Random) -> float:
    """Full jitter: uniform in [0, base * 2**(attempt-1)], attempt counting from 1."""
    return rng.uniform(0.0, base * (2 ** (attempt - 1)))
