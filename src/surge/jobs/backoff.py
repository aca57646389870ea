"""When a failed job runs again: exponential backoff with full jitter, and the decision between
retrying and dead-lettering. Pure: the random source is passed in, nothing sleeps here."""

from __future__ import annotations

import random
from dataclasses import dataclass

from surge.jobs.states import JobState


def retry_delay(
    attempt: int, backoff: float, max_backoff: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait after the `attempt`-th failure (1-based).

    The ceiling doubles each attempt, `backoff * 2**(attempt-1)`, capped at `max_backoff`; the
    delay is drawn uniformly between `backoff` and that ceiling ("full jitter" with a floor), so
    retries of many jobs that failed together spread out instead of hammering a dependency."""
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, got {attempt}")
    floor = min(backoff, max_backoff)
    ceiling = min(max_backoff, backoff * 2.0 ** min(attempt - 1, 62))
    return (rng or random).uniform(floor, max(floor, ceiling))


@dataclass(frozen=True, slots=True)
class Verdict:
    """What becomes of a job after a failed run: its next state and, when retrying, its delay."""

    state: JobState
    delay: float = 0.0


def after_failure(
    attempts: int, retries: int, backoff: float, max_backoff: float,
    rng: random.Random | None = None,
) -> Verdict:
    """A job that has run `attempts` times and may retry `retries` times in all."""
    if attempts > retries:
        return Verdict(JobState.DEAD)
    return Verdict(JobState.RETRYING, retry_delay(attempts, backoff, max_backoff, rng))
