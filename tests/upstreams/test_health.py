"""The active health-check state machine, as tables of (results -> states)."""

from __future__ import annotations

import pytest

from surge.errors import IllegalTransition
from surge.upstreams.health import Health, HealthState, expect_ok

P, F = True, False


def run(results: list[bool], rise: int = 2, fall: int = 3) -> tuple[list[str], list[bool]]:
    state = HealthState(rise, fall)
    states, flips = [], []
    for passed in results:
        flips.append(state.record(passed))
        states.append(state.state.value)
    return states, flips


@pytest.mark.parametrize(
    ("results", "states", "flips"),
    [
        pytest.param(
            [P], ["healthy"], [True], id="a new upstream is warmed by its first pass",
        ),
        pytest.param(
            [F, P, P], ["unhealthy", "unhealthy", "healthy"], [False, False, True],
            id="a new upstream that fails first needs rise passes",
        ),
        pytest.param(
            [P, F, F, F], ["healthy", "healthy", "healthy", "unhealthy"],
            [True, False, False, True], id="fall failures in a row make it unhealthy",
        ),
        pytest.param(
            [P, F, F, P, F, F], ["healthy"] * 6, [True] + [False] * 5,
            id="a pass between failures resets the fall count",
        ),
        pytest.param(
            [P, F, F, F, P, F, P, P],
            ["healthy", "healthy", "healthy", "unhealthy", "unhealthy", "unhealthy",
             "unhealthy", "healthy"],
            [True, False, False, True, False, False, False, True],
            id="a failure between passes resets the rise count",
        ),
    ],
)
def test_health_follows_rise_and_fall(
    results: list[bool], states: list[str], flips: list[bool]
) -> None:
    assert run(results) == (states, flips)


def test_a_new_upstream_is_unknown_and_not_healthy() -> None:
    state = HealthState(rise=2, fall=3)
    assert state.state is Health.UNKNOWN and not state.healthy


def test_rise_and_fall_of_one_flip_on_every_change() -> None:
    assert run([P, F, P, F], rise=1, fall=1)[1] == [True, True, True, True]


def test_recording_after_removal_is_an_illegal_transition() -> None:
    state = HealthState(rise=2, fall=3)
    state.record(True)
    state.remove()
    with pytest.raises(IllegalTransition):
        state.record(True)
    with pytest.raises(IllegalTransition):
        state.remove()


def test_rise_or_fall_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        HealthState(rise=0, fall=3)


@pytest.mark.parametrize(
    ("status", "ok"), [(199, False), (200, True), (302, True), (399, True), (400, False),
                       (503, False)],
)
def test_expect_ok_accepts_statuses_inside_the_range_inclusive(status: int, ok: bool) -> None:
    assert expect_ok(status, (200, 399)) is ok
