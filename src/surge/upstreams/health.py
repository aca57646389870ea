"""The active health-check verdict of one upstream, as an explicit state machine (pure: the
prober does the I/O and feeds each result in).

    unknown --pass--> healthy          a new upstream is warmed: its first pass admits it
    unknown --fail--> unhealthy        then it must pass `rise` times in a row, like any other
    healthy --`fall` fails in a row--> unhealthy
    unhealthy --`rise` passes in a row--> healthy
    any --remove()--> removed          recording or removing again raises IllegalTransition

A check that times out while the upstream is *serving* (it answered live requests recently) is
excused: it counts neither way. A replica whose event loop is busy with queued requests answers
its check late although it serves traffic fine; counting that as a failure ejects every busy
replica at once exactly when load is highest (passive evidence outranks a late probe, as
Linkerd and HAProxy's `observe` treat live traffic). A refused connection or a wrong answer
always counts, and a timeout with no live answers counts, so a dead or hung upstream still
falls after `fall` checks.

Only `healthy` is eligible for traffic; `record()` says when that changes so the caller
rebuilds the service's eligible set only then. `change_note()` is what the log says when the
verdict changes, and only then: a dead upstream is one warning, not one a round."""

from __future__ import annotations

import logging
from enum import StrEnum

from surge.errors import IllegalTransition


class Health(StrEnum):
    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    REMOVED = "removed"


class Check(StrEnum):
    """What one active check found."""

    PASSED = "passed"
    FAILED = "failed"  # refused, reset, no valid answer or a status outside `expect`
    TIMED_OUT = "timed_out"  # connected (or still connecting) but no answer in time


# What `prober.probe` returns when the check timed out (no status code is negative).
NO_ANSWER_IN_TIME = -1


def expect_ok(status: int, expect: tuple[int, int]) -> bool:
    """Whether a check's response status is inside the expected range (both ends included)."""
    return expect[0] <= status <= expect[1]


def check_result(status: int, expect: tuple[int, int]) -> Check:
    """The verdict of one check from what `probe` returned."""
    if status == NO_ANSWER_IN_TIME:
        return Check.TIMED_OUT
    return Check.PASSED if expect_ok(status, expect) else Check.FAILED


def change_note(before: Health, after: Health, reason: str, rise: int,
                fall: int) -> tuple[int, str] | None:
    """The log level and text for a verdict that went from `before` to `after` (None when it
    did not change); `reason` is what the last failed check found, e.g. `status 500`."""
    if before is after:
        return None
    back = "out of rotation until it passes " + (
        "a health check" if rise == 1 else f"{rise} in a row")
    if after is Health.UNHEALTHY and before is Health.UNKNOWN:
        return logging.WARNING, f"failed its first health check ({reason}); {back}"
    if after is Health.UNHEALTHY:
        failed = (f"a health check ({reason})" if fall == 1
                  else f"{fall} health checks in a row (the last: {reason})")
        return logging.WARNING, f"is unhealthy: failed {failed}; {back}"
    if after is Health.HEALTHY and before is Health.UNHEALTHY:
        return logging.INFO, "is healthy again"
    if after is Health.HEALTHY:
        return logging.INFO, "is healthy"
    return None


class HealthState:
    __slots__ = ("rise", "fall", "state", "streak", "excused")

    def __init__(self, rise: int, fall: int) -> None:
        if rise < 1 or fall < 1:
            raise ValueError(f"rise and fall must be at least 1, got rise={rise} fall={fall}")
        self.rise = rise
        self.fall = fall
        self.state = Health.UNKNOWN
        # Consecutive results that argue against the current state (passes while unhealthy,
        # failures while healthy); any result agreeing with the state resets it.
        self.streak = 0
        self.excused = 0  # timed-out checks not counted because the upstream was serving

    @property
    def healthy(self) -> bool:
        return self.state is Health.HEALTHY

    def record(self, result: Check, serving: bool = False) -> bool:
        """Feed one check result (`serving`: the upstream answered live requests since the
        check before); True when the healthy/unhealthy verdict flipped (unknown to unhealthy
        is no flip: the upstream was not getting traffic and still does not)."""
        state = self.state
        if state is Health.REMOVED:
            raise IllegalTransition("health check recorded for a removed upstream")
        if result is Check.TIMED_OUT and serving:
            self.excused += 1
            return False
        passed = result is Check.PASSED
        if state is Health.UNKNOWN:
            self.state = Health.HEALTHY if passed else Health.UNHEALTHY
            self.streak = 0
            return passed
        if passed == (state is Health.HEALTHY):
            self.streak = 0
            return False
        self.streak += 1
        if self.streak < (self.rise if passed else self.fall):
            return False
        self.state = Health.UNHEALTHY if state is Health.HEALTHY else Health.HEALTHY
        self.streak = 0
        return True

    def remove(self) -> None:
        """The upstream left its service; no more checks may be recorded for it."""
        if self.state is Health.REMOVED:
            raise IllegalTransition("upstream already removed")
        self.state = Health.REMOVED

    def __repr__(self) -> str:
        return f"<HealthState {self.state} streak={self.streak} rise={self.rise} fall={self.fall}>"
