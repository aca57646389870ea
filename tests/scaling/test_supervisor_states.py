"""The replica state machine and its restart backoff, without processes: the transition table
as a specification, illegal moves raising, and a crash loop slowing down instead of spinning.
Also the supervisor's pure choices: which replicas scale-in takes, and groups from a config."""

from __future__ import annotations

import itertools

import pytest

from surge.config import parse
from surge.errors import ConfigError, IllegalTransition
from surge.scaling.groups import GroupSpec, Slot, groups_from_config, pick_victims
from surge.scaling.lifecycle import (
    BACKOFF_MAX,
    STABLE_UPTIME,
    TRANSITIONS,
    ProcessState,
    restart_delay,
)
from surge.scaling.process import check_commands
from surge.scaling.replica import Replica

S = ProcessState

ALLOWED = {
    (S.STARTING, S.WARMING), (S.STARTING, S.READY), (S.STARTING, S.STOPPING),
    (S.STARTING, S.EXITED),
    (S.WARMING, S.READY), (S.WARMING, S.DRAINING), (S.WARMING, S.STOPPING),
    (S.WARMING, S.EXITED),
    (S.READY, S.DRAINING), (S.READY, S.STOPPING), (S.READY, S.EXITED),
    (S.DRAINING, S.STOPPING), (S.DRAINING, S.EXITED),
    (S.STOPPING, S.EXITED),
    (S.EXITED, S.BACKOFF),
    (S.BACKOFF, S.STARTING), (S.BACKOFF, S.EXITED),
}


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(S, S)))
def test_the_transition_table_allows_exactly_the_lifecycle_moves(src, dst):
    replica = Replica("api", "api-1", state=src)
    if (src, dst) in ALLOWED:
        replica.move(dst, 1.0)
        assert replica.state is dst and replica.changed_at == 1.0
    else:
        with pytest.raises(IllegalTransition):
            replica.move(dst, 1.0)
        assert replica.state is src


def test_the_table_names_every_state():
    assert set(TRANSITIONS) == set(S)


def test_a_ready_replica_cannot_be_started_again():
    replica = Replica("api", "api-1")
    replica.started(100, 8000, now=0.0)
    with pytest.raises(IllegalTransition):
        replica.started(101, 8001, now=1.0)


def test_an_asked_for_exit_schedules_no_restart():
    replica = Replica("api", "api-1")
    replica.started(100, 8000, now=0.0)
    replica.move(S.STOPPING, 1.0)
    assert replica.exited(0, 2.0, expected=True) is None
    assert replica.state is S.EXITED and replica.pid is None


def test_rapid_failures_double_the_backoff_up_to_its_cap():
    replica = Replica("api", "api-1")
    delays, now = [], 0.0
    for _ in range(12):
        replica.started(100, 8000, now)
        now += 0.1
        delays.append(replica.exited(1, now, expected=False))
        assert replica.state is S.BACKOFF and replica.restart_at == now + delays[-1]
        now += delays[-1]
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0]
    assert delays == sorted(delays) and delays[-1] == BACKOFF_MAX
    assert replica.crash_looping and replica.starts == 12


def test_a_crash_after_a_stable_run_starts_the_backoff_afresh():
    replica = Replica("api", "api-1")
    for now in (0.0, 1.0, 3.0):
        replica.started(100, 8000, now)
        replica.exited(1, now + 0.1, expected=False)
    assert replica.crash_looping
    replica.started(100, 8000, 10.0)
    replica.settle(10.0 + STABLE_UPTIME)
    assert not replica.crash_looping
    assert replica.exited(1, 10.0 + STABLE_UPTIME + 1, expected=False) == restart_delay(1)


def _slot(name: str, state: ProcessState, started_at: float) -> Slot:
    return Slot(Replica("api", name, state=state, started_at=started_at), GroupSpec("api", "app"))


def test_scale_in_takes_replicas_not_serving_first_then_the_newest_ready():
    slots = [_slot("old", S.READY, 1.0), _slot("new", S.READY, 5.0),
             _slot("crashing", S.BACKOFF, 4.0), _slot("booting", S.STARTING, 6.0)]
    assert [s.replica.name for s in pick_victims(slots, 3)] == ["crashing", "booting", "new"]
    assert pick_victims(slots, 0) == []


def test_groups_come_from_process_services_and_job_workers():
    config = parse("""
services:
  api:
    process: {command: "app --port {port}", replicas: 5, env: {A: "1"}}
    health: {path: /up}
    scaling: {min: 1, max: 3, target: {cpu_percent: 50}}
  fixed: {upstreams: [127.0.0.1:9]}
routes: [{prefix: /, service: api}]
jobs:
  broker: memory://
  workers:
    mail: {command: "surge worker app:queue", replicas: 0,
           scaling: {min: 0, max: 4, target: {queue_depth_per_replica: 10}}}
""", check_support=False)
    api, mail = groups_from_config(config)
    assert (api.name, api.replicas, api.env, api.health_path, api.gateway) == (
        "api", 3, {"A": "1"}, "/up", True)  # the starting count is kept within min..max
    assert (mail.name, mail.replicas, mail.gateway) == ("mail", 0, False)


def test_a_command_that_cannot_be_found_is_refused_before_anything_starts():
    with pytest.raises(ConfigError) as caught:
        check_commands([GroupSpec("api", "no-such-program-here --port {port}")])
    assert caught.value.problems == [
        "api: command not found: 'no-such-program-here --port {port}'"]
