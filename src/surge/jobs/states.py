"""The job lifecycle as an explicit state machine: the states, the moves allowed between them,
and `transition`, which raises `IllegalTransition` on any other move. Pure: no I/O, no clock.

    scheduled/retrying/unknown --due--> queued --claim--> running
    running --> succeeded | retrying | dead | unknown | queued (released or lease lost)
    dead --manual retry--> queued;  anything waiting --> cancelled
"""

from __future__ import annotations

from enum import StrEnum

from surge.errors import IllegalTransition


class JobState(StrEnum):
    QUEUED = "queued"          # ready to run now
    SCHEDULED = "scheduled"    # waiting for its `_delay` / `_at`
    RUNNING = "running"        # claimed by a worker, under a lease
    SUCCEEDED = "succeeded"
    RETRYING = "retrying"      # failed, will run again after its backoff (failed-will-retry)
    DEAD = "dead"              # out of retries: in the dead-letter queue
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"        # no worker that claimed it knows its name; waits, never dropped


WAITING = frozenset({JobState.SCHEDULED, JobState.RETRYING, JobState.UNKNOWN})
ACTIVE = frozenset({JobState.QUEUED, JobState.RUNNING}) | WAITING   # holds its idempotency key
FINAL = frozenset({JobState.SUCCEEDED, JobState.CANCELLED})

_MOVES: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.CANCELLED}),
    JobState.SCHEDULED: frozenset({JobState.QUEUED, JobState.RUNNING, JobState.CANCELLED}),
    JobState.RETRYING: frozenset({JobState.QUEUED, JobState.RUNNING, JobState.CANCELLED}),
    JobState.UNKNOWN: frozenset({JobState.QUEUED, JobState.RUNNING, JobState.CANCELLED}),
    JobState.RUNNING: frozenset({
        JobState.SUCCEEDED, JobState.RETRYING, JobState.DEAD, JobState.UNKNOWN, JobState.QUEUED,
    }),
    JobState.DEAD: frozenset({JobState.QUEUED}),
    JobState.SUCCEEDED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


def can_move(current: JobState | str, target: JobState | str) -> bool:
    return JobState(target) in _MOVES[JobState(current)]


def transition(current: JobState | str, target: JobState | str) -> JobState:
    """`target` if the lifecycle allows `current -> target`, else `IllegalTransition`."""
    if not can_move(current, target):
        raise IllegalTransition(f"a job cannot move from {current} to {target}")
    return JobState(target)
