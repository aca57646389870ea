"""The job lifecycle table and the retry policy, as pure functions."""

from __future__ import annotations

import random

import pytest

from surge.errors import IllegalTransition, JobError
from surge.jobs.backoff import after_failure, retry_delay
from surge.jobs.record import JobRecord, encode_arguments
from surge.jobs.states import JobState, can_move, transition


@pytest.mark.parametrize("current, target", [
    ("queued", "running"), ("scheduled", "queued"), ("running", "succeeded"),
    ("running", "retrying"), ("running", "dead"), ("running", "unknown"), ("running", "queued"),
    ("retrying", "queued"), ("unknown", "running"), ("dead", "queued"), ("queued", "cancelled"),
])
def test_the_lifecycle_allows_its_moves(current, target):
    assert transition(current, target) == JobState(target)


@pytest.mark.parametrize("current, target", [
    ("succeeded", "running"), ("cancelled", "queued"), ("queued", "succeeded"),
    ("dead", "running"), ("running", "cancelled"), ("scheduled", "dead"),
])
def test_an_illegal_move_raises(current, target):
    assert not can_move(current, target)
    with pytest.raises(IllegalTransition, match=f"from {current} to {target}"):
        transition(current, target)


def test_finished_states_are_terminal():
    for state in JobState:
        assert not can_move(JobState.SUCCEEDED, state)
        assert not can_move(JobState.CANCELLED, state)


@pytest.mark.parametrize("attempt", range(1, 30))
def test_retry_delay_stays_between_backoff_and_its_doubling_ceiling(attempt):
    rng = random.Random(attempt)
    for _ in range(200):
        delay = retry_delay(attempt, 1.0, 600.0, rng)
        assert 1.0 <= delay <= min(600.0, 2.0 ** (attempt - 1))


def test_retry_delay_is_jittered_across_the_whole_range():
    rng = random.Random(7)
    delays = [retry_delay(8, 1.0, 600.0, rng) for _ in range(2000)]
    assert min(delays) < 10 and max(delays) > 120   # ceiling 128: spread, not clustered


def test_retry_delay_never_exceeds_max_backoff_even_after_many_attempts():
    assert retry_delay(10_000, 1.0, 600.0, random.Random(1)) <= 600.0


def test_a_failure_retries_until_the_retries_are_spent_then_dead_letters():
    rng = random.Random(3)
    verdicts = [after_failure(n, 3, 1.0, 10.0, rng) for n in range(1, 5)]
    assert [v.state for v in verdicts] == [JobState.RETRYING] * 3 + [JobState.DEAD]
    assert all(1.0 <= v.delay <= 10.0 for v in verdicts[:3])


def test_unserialisable_arguments_are_refused_naming_the_argument():
    with pytest.raises(JobError, match=r"argument 'when' \(object\) is not JSON-serialisable"):
        encode_arguments("send", ("a",), {"when": object()})
    assert encode_arguments("send", (1, "a"), {"x": [None]}) == ([1, "a"], {"x": [None]})


def test_a_record_survives_its_flat_and_json_forms():
    record = JobRecord("send", args=[1, {"a": None}], key="k", result=[1], error="e",
                       state=JobState.RETRYING, attempts=2, run_at=12.5)
    assert JobRecord.from_fields(record.to_fields()) == record
    assert JobRecord.from_json(record.to_json()) == record
