"""Retry rules (pure, `now` passed in): the retry budget that keeps retries from multiplying an
overload, and the jittered backoff between tries.

The budget allows retries up to `percent` of the requests of the last `window` seconds, plus a
floor of `min_per_second` retries a second on top (Finagle's `minRetriesPerSec`), so a quiet
service still retries every connect failure to a dead upstream until outlier detection ejects
it. The floor is a token bucket holding at most one second's worth: it never lets a burst of
retries through, and under overload the share, not the floor, is what counts."""

from __future__ import annotations

import random
from collections import deque

WINDOW = 10.0
MIN_PER_SECOND = 10


class RetryBudget:
    """Counts nothing per request itself: the service keeps a plain running total of its
    requests, and `tick` (about once a second, off the data path) marks where that total stood
    and refills the floor, so granting a retry is a subtraction and a comparison or two."""

    __slots__ = ("share", "window", "per_second", "floor", "marks", "retries", "exhausted")

    def __init__(self, percent: float, min_per_second: int = MIN_PER_SECOND,
                 window: float = WINDOW) -> None:
        self.share = percent / 100.0
        self.window = window
        self.per_second = float(min_per_second)
        self.floor = self.per_second  # retries the floor can grant now; full: retry at once
        self.marks: deque[tuple[float, int, int]] = deque()  # (when, requests, retries)
        self.retries = 0    # retries granted from the share, all time
        self.exhausted = 0  # retries refused, all time (a metric)

    def tick(self, now: float, requests: int) -> None:
        """Mark the service's running request total, forget marks older than the window, and
        refill the floor for the time since the last mark."""
        marks = self.marks
        if marks:
            self.floor = min(self.per_second,
                             self.floor + (now - marks[-1][0]) * self.per_second)
        marks.append((now, requests, self.retries))
        while len(marks) > 1 and marks[1][0] <= now - self.window:
            marks.popleft()

    def try_retry(self, requests: int) -> bool:
        """Spend one retry: from the share while retries in the window stay within it of the
        requests, else from the floor."""
        _, base_requests, base_retries = self.marks[0] if self.marks else (0.0, 0, 0)
        if self.retries - base_retries + 1 <= (requests - base_requests) * self.share:
            self.retries += 1
            return True
        if self.floor >= 1.0:
            self.floor -= 1.0
            return True
        self.exhausted += 1
        return False


def backoff(base: float, attempt: int, rng: random.Random) -> float:
    """Full jitter: uniform in [0, base * 2**(attempt-1)], attempt counting from 1."""
    return rng.uniform(0.0, base * (2 ** (attempt - 1)))
