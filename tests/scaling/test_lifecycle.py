"""The one process lifecycle that replicas and gateway processes share, without processes: the
table as a specification (every move it allows, every other raising, whatever the subclass),
and the one restart backoff as a pure function of the failures in a row and the uptime."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

from surge.errors import IllegalTransition
from surge.scaling.lifecycle import (
    BACKOFF_BASE,
    BACKOFF_MAX,
    LIVE,
    STABLE_UPTIME,
    TRANSITIONS,
    Lifecycle,
    ProcessState,
    check_move,
    failures_after_exit,
    restart_delay,
)

S = ProcessState


@dataclass
class Named(Lifecycle):
    name: str = "one"

    def __str__(self) -> str:
        return f"thing {self.name}"


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(S, S)))
def test_check_move_raises_exactly_outside_the_table(src, dst):
    if dst in TRANSITIONS[src]:
        check_move("p", src, dst)
    else:
        with pytest.raises(IllegalTransition, match=f"p: {src} -> {dst} is not allowed"):
            check_move("p", src, dst)


def test_every_state_can_reach_exited_and_only_backoff_leads_back_to_starting():
    assert all(S.EXITED in TRANSITIONS[s] or s is S.EXITED for s in S)
    assert {s for s in S if S.STARTING in TRANSITIONS[s]} == {S.BACKOFF}
    assert LIVE == {S.STARTING, S.WARMING, S.READY}


def test_an_illegal_move_names_the_slot_and_changes_nothing():
    life = Named(state=S.EXITED, changed_at=3.0)
    with pytest.raises(IllegalTransition, match="thing one: exited -> ready"):
        life.move(S.READY, 4.0)
    assert (life.state, life.changed_at, life.history) == (S.EXITED, 3.0, [])


def test_the_history_keeps_the_last_twenty_moves():
    life = Named()
    for now in range(15):
        life.begin(100, float(now))
        life.exited(1, now + 0.5, expected=False)
    assert len(life.history) == 20 and life.history[-1] == (14.5, S.BACKOFF)


@pytest.mark.parametrize(("failures", "delay"), [
    (1, BACKOFF_BASE), (2, 2 * BACKOFF_BASE), (3, 4 * BACKOFF_BASE), (6, 32 * BACKOFF_BASE),
    (7, BACKOFF_MAX), (100, BACKOFF_MAX), (0, BACKOFF_BASE)])
def test_the_restart_delay_doubles_per_rapid_failure_up_to_its_cap(failures, delay):
    assert restart_delay(failures) == min(delay, BACKOFF_MAX)


def test_an_exit_after_a_stable_run_is_the_first_failure_of_a_new_run():
    assert failures_after_exit(5, started_at=0.0, now=STABLE_UPTIME) == 1
    assert failures_after_exit(5, started_at=0.0, now=STABLE_UPTIME - 0.1) == 6
    assert failures_after_exit(0, started_at=0.0, now=0.1) == 1


def test_views_of_uptime_and_restart_follow_the_state():
    life = Named()
    assert (life.uptime(5.0), life.restart_in(5.0)) == (None, None)
    life.begin(100, 1.0)
    assert life.uptime(3.5) == 2.5
    assert life.exited(1, 4.0, expected=False) == BACKOFF_BASE
    assert (life.uptime(4.2), life.restart_in(4.2)) == (None, 0.3)
    assert life.restart_in(10.0) == 0.0
