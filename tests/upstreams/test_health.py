"""The active health-check state machine, as tables of (results -> states)."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket

import pytest

from surge.config import parse
from surge.errors import IllegalTransition
from surge.upstreams.health import (
    NO_ANSWER_IN_TIME,
    Check,
    Health,
    HealthState,
    change_note,
    check_result,
    expect_ok,
)
from surge.upstreams.prober import os_error_reason
from surge.upstreams.service import ServiceRuntime

P, F, T = Check.PASSED, Check.FAILED, Check.TIMED_OUT
# The same results while the upstream answers live requests (passive evidence it serves).
P_, F_, T_ = ((result, "serving") for result in (P, F, T))


def run(results: list, rise: int = 2, fall: int = 3) -> tuple[list[str], list[bool]]:
    state = HealthState(rise, fall)
    states, flips = [], []
    for item in results:
        result, serving = item if isinstance(item, tuple) else (item, None)
        flips.append(state.record(result, serving=serving is not None))
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
    state.record(P)
    state.remove()
    with pytest.raises(IllegalTransition):
        state.record(P)
    with pytest.raises(IllegalTransition):
        state.remove()


@pytest.mark.parametrize(
    ("results", "states", "flips"),
    [
        pytest.param(
            [P, T_, T_, T_, T_], ["healthy"] * 5, [True] + [False] * 4,
            id="a busy upstream answering live requests survives any number of late checks",
        ),
        pytest.param(
            [P, T, T, T], ["healthy", "healthy", "healthy", "unhealthy"],
            [True, False, False, True],
            id="a timeout with no live answers counts as a failure: a hung upstream falls",
        ),
        pytest.param(
            [P, F_, F_, F_], ["healthy", "healthy", "healthy", "unhealthy"],
            [True, False, False, True],
            id="a refused or wrong answer counts even while the upstream serves",
        ),
        pytest.param(
            [P, T, T, T_, T], ["healthy", "healthy", "healthy", "healthy", "unhealthy"],
            [True, False, False, False, True],
            id="an excused timeout neither adds to nor resets the failure streak",
        ),
        pytest.param(
            [P, F, F, F, T_, T_, P, P],
            ["healthy", "healthy", "healthy", "unhealthy", "unhealthy", "unhealthy",
             "unhealthy", "healthy"],
            [True, False, False, True, False, False, False, True],
            id="an excused timeout is no pass: an unhealthy upstream still needs rise passes",
        ),
        pytest.param(
            [T_, P], ["unknown", "healthy"], [False, True],
            id="a new upstream is not admitted by an excused timeout, only by a pass",
        ),
    ],
)
def test_late_checks_of_a_serving_upstream_are_excused(
    results: list, states: list[str], flips: list[bool]
) -> None:
    assert run(results) == (states, flips)


def test_excused_checks_are_counted() -> None:
    state = HealthState(rise=1, fall=1)
    for result in (P, T, P):
        state.record(result, serving=True)
        state.record(result, serving=False)
    assert state.excused == 1 and state.healthy


@pytest.mark.parametrize(
    ("status", "result"),
    [(200, P), (503, F), (0, F), (NO_ANSWER_IN_TIME, T)],
)
def test_check_result_tells_a_timeout_from_a_failure(status: int, result: Check) -> None:
    assert check_result(status, (200, 399)) is result


def test_rise_or_fall_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        HealthState(rise=0, fall=3)


@pytest.mark.parametrize(
    ("status", "ok"), [(199, False), (200, True), (302, True), (399, True), (400, False),
                       (503, False)],
)
def test_expect_ok_accepts_statuses_inside_the_range_inclusive(status: int, ok: bool) -> None:
    assert expect_ok(status, (200, 399)) is ok


def test_a_service_excuses_a_late_check_only_within_interval_and_timeout_of_a_live_answer():
    async def run() -> None:
        config = parse("services: {a: {upstreams: ['127.0.0.1:1'], health: "
                       "{interval: 1s, timeout: 500ms, rise: 1, fall: 1}}}\n"
                       "routes: [{prefix: /, service: a}]")
        service = ServiceRuntime("a", config.services["a"], connect_timeout=1.0)
        up = service.add("127.0.0.1:1", 1, 0.0)
        service.health_result(up, P, now=10.0)
        up.answered_at = 10.0
        service.health_result(up, T, now=11.5)  # answered 1.5 s ago: serving
        assert up.healthy and service.checks_excused == 1
        service.health_result(up, T, now=11.6)  # 1.6 s: no recent live answer
        assert not up.healthy and service.checks_excused == 1
        assert up not in service.eligible

    asyncio.run(run())


U, H, D = Health.UNKNOWN, Health.HEALTHY, Health.UNHEALTHY


@pytest.mark.parametrize(
    ("before", "after", "note"),
    [(U, D, (logging.WARNING, "failed its first health check (connection refused); "
                              "out of rotation until it passes 2 in a row")),
     (H, D, (logging.WARNING, "is unhealthy: failed 3 health checks in a row "
                              "(the last: connection refused); out of rotation until it passes "
                              "2 in a row")),
     (D, H, (logging.INFO, "is healthy again")),
     (U, H, (logging.INFO, "is healthy")),
     (D, D, None), (H, H, None), (U, U, None)],
)
def test_a_change_of_verdict_and_only_a_change_is_noted(before, after, note) -> None:
    assert change_note(before, after, "connection refused", rise=2, fall=3) == note


def test_a_note_counts_single_checks_in_plain_words() -> None:
    assert change_note(H, D, "status 500", rise=1, fall=1) == (
        logging.WARNING,
        "is unhealthy: failed a health check (status 500); out of rotation until it passes a "
        "health check")


@pytest.mark.parametrize(
    ("error", "reason"),
    [(ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('127.0.0.1', 1)"),
      "connection refused"),
     (ConnectionResetError(errno.ECONNRESET, "reset"), "connection reset by peer"),
     (socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
      "cannot resolve the host (Name or service not known)"),
     (OSError("odd"), "odd")],
)
def test_a_failed_check_names_the_system_error_in_plain_words(error, reason) -> None:
    assert os_error_reason(error) == reason


def test_a_service_logs_a_dead_upstream_once_not_every_round(caplog) -> None:
    async def run() -> None:
        config = parse("services: {a: {upstreams: ['127.0.0.1:1'], health: "
                       "{interval: 1s, timeout: 500ms, rise: 2, fall: 2}}}\n"
                       "routes: [{prefix: /, service: a}]")
        service = ServiceRuntime("a", config.services["a"], connect_timeout=1.0)
        up = service.add("127.0.0.1:1", 1, 0.0)
        with caplog.at_level(logging.INFO, "surge.upstreams"):
            for now in range(10):
                service.health_result(up, F, float(now), "connection refused")
            service.health_result(up, P, 10.0, "")
            service.health_result(up, P, 11.0, "")
            service.health_result(up, P, 12.0, "")

    asyncio.run(run())
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "service a: upstream 127.0.0.1:1 failed its first health check "
                    "(connection refused); out of rotation until it passes 2 in a row"),
        ("INFO", "service a: upstream 127.0.0.1:1 is healthy again")]
