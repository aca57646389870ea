"""The active health-check verdict of one upstream, as an explicit state machine (pure: the
prober does the I/O and feeds each result in).

    unknown --pass--> healthy          a new upstream is warmed: its first pass admits it
    unknown --fail--> unhealthy        then it must pass `rise` times in a row, like any other
    healthy --`fall` fails in a row--> unhealthy
    unhealthy --`rise` passes in a row--> healthy
    any --remove()--> removed          recording or removing again raises IllegalTransition

Only `healthy` is eligible for traffic; `record()` says when that changes so the caller
rebuilds the service's eligible set only then."""

from __future__ import annotations

from enum import StrEnum

from surge.errors import IllegalTransition


class Health(StrEnum):
    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    REMOVED = "removed"


def expect_ok(status: int, expect: tuple[int, int]) -> bool:
    """Whether a check's response status is inside the expected range (both ends included)."""
    return expect[0] <= status <= expect[1]


class HealthState:
    __slots__ = ("rise", "fall", "state", "streak")

    def __init__(self, rise: int, fall: int) -> None:
        if rise < 1 or fall < 1:
            raise ValueError(f"rise and fall must be at least 1, got rise={rise} fall={fall}")
        self.rise = rise
        self.fall = fall
        self.state = Health.UNKNOWN
        # Consecutive results that argue against the current state (passes while unhealthy,
        # failures while healthy); any result agreeing with the state resets it.
        self.streak = 0

    @property
    def healthy(self) -> bool:
        return self.state is Health.HEALTHY

    def record(self, passed: bool) -> bool:
        """Feed one check result; True when the healthy/unhealthy verdict flipped (unknown to
        unhealthy is no flip: the upstream was not getting traffic and still does not)."""
        state = self.state
        if state is Health.REMOVED:
            raise IllegalTransition("health check recorded for a removed upstream")
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
