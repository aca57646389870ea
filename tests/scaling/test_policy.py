"""The autoscaler policy as tables: load over time in, replica counts out. Pure: no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from surge.config import parse
from surge.errors import ConfigError
from surge.scaling.policy import Sample, ScalingPolicy
from surge.scaling.spec import (
    PolicySpec,
    Rule,
    ScheduleEntry,
    Step,
    Targets,
    group_policies,
    parse_step,
    policy_at,
)

PERIOD = 2.0
CPU70 = Targets(cpu_percent=70)


def spec(**overrides) -> PolicySpec:
    fields = {"min": 1, "max": 20, "targets": CPU70, "timezone": UTC} | overrides
    return PolicySpec(**fields)


def cpu_samples(now: float, replicas: int, total_load: float | None) -> list[Sample]:
    """`total_load` is in percent of one replica's CPU, spread evenly over the replicas."""
    if total_load is None or replicas == 0:
        return []
    share = total_load / replicas
    return [Sample(at=now, replica=f"r{i}", cpu_percent=share) for i in range(replicas)]


def run(policy: ScalingPolicy, loads: list[float | None], current: int,
        start: float = 0.0) -> list[int]:
    """One decision per control period; each applies before the next period's samples."""
    counts = []
    for i, load in enumerate(loads):
        now = start + (i + 1) * PERIOD
        current = policy.decide(cpu_samples(now, current, load), current, now).desired
        counts.append(current)
    return counts


@pytest.mark.parametrize(
    ("current", "cpu_per_replica", "expected"),
    [
        (4, 70, 4),
        (4, 76, 4),   # +8.6%: inside the 10% band
        (4, 64, 4),   # -8.6%
        (4, 77.5, 5),  # +10.7%: outside
        (10, 63.5, 10),  # -9.3%
        (10, 84, 12),
        (10, 56, 8),
    ],
)
def test_no_action_inside_the_tolerance_band(current, cpu_per_replica, expected):
    policy = ScalingPolicy(spec(scale_down=Rule(0.0, Step())))
    samples = cpu_samples(PERIOD, current, cpu_per_replica * current)
    assert policy.decide(samples, current, PERIOD).desired == expected


@pytest.mark.parametrize(
    ("max_step", "expected"),
    [
        ("1000%", 10),   # 2 replicas at 350% each need ceil(2 * 350 / 70) = 10
        (20, 10),
        ("100%", 4),     # doubling per period
        (3, 5),
        ([1, "200%"], 6),  # the larger of the two allowed steps
    ],
)
def test_a_spike_scales_up_in_one_step_to_the_needed_count_within_max_step(max_step, expected):
    policy = ScalingPolicy(spec(scale_up=Rule(0.0, parse_step(max_step))))
    assert run(policy, [700], current=2) == [expected]


def test_a_max_step_of_zero_forbids_that_direction():
    policy = ScalingPolicy(spec(scale_up=Rule(0.0, parse_step(0))))
    assert run(policy, [700, 700], current=2) == [2, 2]


def test_a_spike_reaches_the_needed_count_in_successive_doublings():
    doubling = Rule(0.0, Step(percent=100))
    assert run(ScalingPolicy(spec(scale_up=doubling)), [700] * 4, current=1) == [2, 4, 8, 10]


def test_by_default_a_spike_grows_by_four_replicas_or_doubling_whichever_is_more():
    assert run(ScalingPolicy(spec()), [700] * 3, current=1) == [5, 10, 10]  # HPA's default rule


def test_a_spike_stops_at_max():
    assert run(ScalingPolicy(spec(max=6, scale_up=Rule(0, Step()))), [2000], current=2) == [6]


def test_a_dip_shorter_than_the_scale_down_window_causes_no_scale_in():
    loads = [280] * 10 + [70] * 60 + [280] * 10  # 2 minutes of dip inside a 5 minute window
    assert run(ScalingPolicy(spec()), loads, current=4) == [4] * 80


def test_a_dip_longer_than_the_window_scales_in_one_replica_per_period():
    loads = [280] * 10 + [70] * 160
    counts = run(ScalingPolicy(spec()), loads, current=4)
    assert counts[:159] == [4] * 159  # 300 s of high recommendations still in the window
    assert counts[159:162] == [3, 2, 1]


def test_a_square_wave_faster_than_the_window_causes_no_oscillation():
    wave = ([350] * 10 + [70] * 10) * 15  # 20 s high, 20 s low, for 10 minutes
    counts = run(ScalingPolicy(spec()), wave, current=1)
    assert counts == [5] * len(wave)


@pytest.mark.parametrize(
    ("loads", "expected"),
    [
        ([None] * 5, [4] * 5),                  # no samples at all: hold
        ([280, None, None, 280], [4, 4, 4, 4]),  # gaps: hold
    ],
)
def test_missing_metrics_hold(loads, expected):
    policy = ScalingPolicy(spec(scale_down=Rule(0.0, Step())))
    assert run(policy, loads, current=4) == expected


def test_replicas_missing_from_the_samples_never_cause_a_scale_in():
    policy = ScalingPolicy(spec(scale_down=Rule(0.0, Step())))
    two_of_four_idle = [Sample(at=2.0, replica=r, cpu_percent=5) for r in ("r0", "r1")]
    decision = policy.decide(two_of_four_idle, current=4, now=2.0)
    assert decision.desired == 4
    assert "missing" in decision.reason


def test_replicas_missing_from_the_samples_count_as_idle_for_scale_up():
    policy = ScalingPolicy(spec())
    two_of_four_hot = [Sample(at=2.0, replica=r, cpu_percent=210) for r in ("r0", "r1")]
    # (210 + 210 + 0 + 0) / 4 = 105% -> ceil(4 * 105 / 70) = 6
    assert policy.decide(two_of_four_hot, current=4, now=2.0).desired == 6


def test_stale_samples_are_ignored():
    policy = ScalingPolicy(spec(scale_down=Rule(0.0, Step())))
    old = [Sample(at=0.0, replica="r0", cpu_percent=500)]
    assert policy.decide(old, current=2, now=10.0).desired == 2


def test_the_largest_proposal_of_several_metrics_wins():
    policy = ScalingPolicy(spec(targets=Targets(cpu_percent=70, inflight_per_replica=10,
                                         p95_latency=0.25), scale_up=Rule(0, Step())))
    samples = [
        Sample(at=2.0, replica=r, cpu_percent=35, inflight=30, p95_latency=0.3)
        for r in ("r0", "r1")
    ]
    decision = policy.decide(samples, current=2, now=2.0)
    assert decision.proposals == {"cpu_percent": 1, "inflight_per_replica": 6, "p95_latency": 3}
    assert decision.desired == 6
    assert decision.reason.startswith("inflight_per_replica 30 vs target 10 -> 6")
    assert decision.metrics["cpu_percent"] == 35


MONDAY = datetime(2026, 11, 23, tzinfo=UTC).timestamp()
HOUR = 3600.0


@pytest.mark.parametrize(
    ("at", "floor"),
    [
        (MONDAY + 7 * HOUR + 59 * 60, 1),    # Friday 19:00 is the entry in force
        (MONDAY + 8 * HOUR, 4),              # fires exactly now
        (MONDAY + 12 * HOUR, 4),
        (MONDAY + 19 * HOUR, 1),
        (MONDAY + 5 * 24 * HOUR + 8 * HOUR, 1),  # Saturday: no weekday entry fired
    ],
)
def test_schedule_floors_apply_at_their_times(at, floor):
    busy = (ScheduleEntry("0 8 * * 1-5", 4), ScheduleEntry("0 19 * * 1-5", 1))
    policy = ScalingPolicy(spec(schedule=busy))
    decision = policy.decide(cpu_samples(at, 1, 10), current=1, now=at)
    assert decision.desired == floor
    if floor == 4:
        assert "schedule '0 8 * * 1-5'" in decision.reason


def test_when_the_schedule_floor_lifts_replicas_fall_by_the_down_rules():
    busy = (ScheduleEntry("0 8 * * 1-5", 4), ScheduleEntry("0 19 * * 1-5", 1))
    policy = ScalingPolicy(spec(schedule=busy))
    before_seven = MONDAY + 19 * HOUR - 160 * PERIOD  # idle load, held up by the 08:00 floor
    counts = run(policy, [10] * 164, current=4, start=before_seven)
    assert counts[:159] == [4] * 159
    assert counts[159:] == [3, 2, 1, 1, 1]  # from 19:00, one replica per period


def queue_run(policy: ScalingPolicy, depths: list[int], current: int) -> list[int]:
    counts = []
    for i, depth in enumerate(depths):
        now = (i + 1) * PERIOD
        current = policy.decide([Sample(at=now, queue_depth=depth)], current, now).desired
        counts.append(current)
    return counts


def test_a_queue_worker_scales_to_zero_after_the_window_and_the_first_job_wakes_one():
    policy = ScalingPolicy(spec(min=0, max=8, targets=Targets(queue_depth_per_replica=100)))
    depths = [0] * 152 + [1, 1, 450, 450]
    counts = queue_run(policy, depths, current=1)
    assert counts[:150] == [1] * 150  # the queue has not been empty for 300 s yet
    assert counts[150:152] == [0, 0]
    assert counts[152:] == [1, 1, 5, 5]
    decision = ScalingPolicy(policy.spec).decide([Sample(at=2.0, queue_depth=0)], 1, 2.0)
    assert decision.desired == 1  # a fresh policy has no history: the window is still open


def test_a_queue_worker_without_a_depth_reading_holds():
    policy = ScalingPolicy(spec(min=0, targets=Targets(queue_depth_per_replica=100)))
    assert queue_run(policy, [], current=0) == []
    assert policy.decide([], current=3, now=2.0).desired == 3


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"min": 3, "max": 2, "target": {"cpu_percent": 70}},
         "scaling.max: max (2) is below min (3)"),
        ({"min": 1, "max": 2, "target": {}}, "scaling.target: set at least one of cpu_percent, "
         "inflight_per_replica, p95_latency, queue_depth_per_replica"),
        ({"min": 0, "max": 2, "target": {"cpu_percent": 70}},
         "scaling.min: 0 needs a queue_depth_per_replica target to wake on"),
        ({"min": 1, "max": 2, "target": {"cpu_percent": 70},
          "schedule": [{"cron": "not cron", "min": 1}]},
         "scaling.schedule[0].cron: invalid cron expression 'not cron'"),
        ({"min": 1, "max": 2, "target": {"cpu_percent": 70},
          "schedule": [{"cron": "0 8 * * *", "min": 3}]},
         "scaling.schedule: schedule[0].min (3) is above max (2)"),
        ({"min": 1, "max": 2, "target": {"cpu_percent": 70},
          "scale_up": {"max_step": "lots"}},
         "scaling.scale_up: max_step must be a count or a percent, got 'lots'"),
        ({"min": 1, "max": 2, "target": {"cpu_percent": 70},
          "scale_down": {"max_step": -1}},
         "scaling.scale_down: max_step must be a count or a percent, got -1"),
    ],
)
def test_an_unusable_scaling_block_is_a_config_error(config, problem):
    with pytest.raises(ConfigError) as error:
        PolicySpec.from_config(config)
    assert error.value.problems == [problem]


def test_every_problem_of_a_block_is_reported_at_once():
    with pytest.raises(ConfigError) as error:
        PolicySpec.from_config({"min": 3, "max": 2, "target": {},
                                "schedule": [{"cron": "x", "min": 1}]})
    assert [p.split(":")[0] for p in error.value.problems] == [
        "scaling.max", "scaling.target", "scaling.schedule[0].cron"]


def test_a_spec_built_in_code_is_checked_with_the_config_files_words():
    """One rule, one place: PolicySpec's constructor calls the checks the config model calls,
    so a library user and `surge check` read the same sentence."""
    with pytest.raises(ValueError, match=r"^max: max \(2\) is below min \(3\)$"):
        PolicySpec(min=3, max=2, targets=Targets(cpu_percent=70))
    with pytest.raises(ValueError, match=r"^min: min \(-1\) is below zero \(0\)$"):
        PolicySpec(min=-1, max=2, targets=Targets(cpu_percent=70))
    file = "services: {api: {process: {command: 'x {port}'}, scaling: {min: 3, max: 2, " \
           "target: {cpu_percent: 70}}}}"
    with pytest.raises(ConfigError, match=r"services\.api\.scaling\.max: max \(2\) is below"):
        parse(file)


def test_from_config_reads_the_surge_yaml_form():
    parsed = PolicySpec.from_config({
        "min": 1, "max": 8,
        "target": {"cpu_percent": 70, "p95_latency": "250ms", "queue_depth_per_replica": 100},
        "scale_up": {"stabilization": "0s", "max_step": "100%"},
        "scale_down": {"stabilization": "5m", "max_step": 1},
        "schedule": [{"cron": "0 8 * * 1-5", "min": 4}],
    })
    assert parsed.targets == Targets(cpu_percent=70, p95_latency=0.25, queue_depth_per_replica=100)
    assert parsed.scale_up == Rule(0.0, Step(percent=100))
    assert parsed.scale_down == Rule(300.0, Step(pods=1))
    assert parsed.schedule == (ScheduleEntry("0 8 * * 1-5", 4),)
    assert parsed.control_period == 2.0


def test_from_config_takes_durations_as_text_numbers_or_timedeltas():
    parsed = PolicySpec.from_config({
        "min": 1, "max": 2, "target": {"p95_latency": timedelta(milliseconds=250)},
        "scale_down": {"stabilization": 60}, "period": "500ms",
    })
    assert (parsed.targets.p95_latency, parsed.scale_down.stabilization) == (0.25, 60.0)
    assert parsed.control_period == 0.5


def test_from_config_defaults_match_surge_yaml_and_read_attributes():
    class Block:  # the config model exposes attributes, not keys
        min, max, target, scale_up, scale_down, schedule = 2, 5, {"cpu_percent": 50}, None, None, []

    parsed = PolicySpec.from_config(Block(), control_period=1.0)
    assert (parsed.scale_up, parsed.scale_down) == (Rule(0.0, Step(pods=4, percent=100)),
                                                   Rule(300.0, Step(pods=1)))
    assert parsed.control_period == 1.0


@st.composite
def scenarios(draw):
    low = draw(st.integers(0, 5))
    high = draw(st.integers(max(low, 1), 12))
    targets = Targets(cpu_percent=70, queue_depth_per_replica=50)
    schedule = draw(st.lists(st.builds(ScheduleEntry, st.sampled_from(["0 8 * * *", "*/5 * * * *"]),
                                       st.integers(0, high)), max_size=2))
    steps = draw(st.lists(st.tuples(st.floats(0.1, 120), st.one_of(st.none(), st.floats(0, 2000)),
                                    st.one_of(st.none(), st.integers(0, 2000))), max_size=40))
    up = Rule(draw(st.sampled_from([0.0, 10.0])),
              draw(st.sampled_from([Step(), Step(pods=1), Step(percent=100), Step(4, 100)])))
    down = Rule(draw(st.sampled_from([0.0, 60.0, 300.0])), draw(st.sampled_from([Step(), Step(1)])))
    start = draw(st.integers(0, 30))
    return PolicySpec(low, high, targets, up, down, tuple(schedule), timezone=UTC), steps, start


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_replicas_always_stay_within_min_and_max(scenario):
    policy_spec, steps, current = scenario
    policy = ScalingPolicy(policy_spec)
    now = MONDAY
    for gap, cpu, depth in steps:
        now += gap
        samples = cpu_samples(now, current, cpu)
        if depth is not None:
            samples.append(Sample(at=now, queue_depth=depth))
        current = policy.decide(samples, current, now).desired
        assert policy_spec.min <= current <= policy_spec.max


def test_the_configs_scaling_blocks_become_specs_of_their_groups():
    config = parse(
        "services: {api: {process: {command: 'x {port}'}, scaling: {max: 8, "
        "target: {cpu_percent: 70, p95_latency: 250ms}, scale_down: {max_step: 50%}}},\n"
        "           web: {process: {command: 'y {port}'}}}\n"
        "jobs: {broker: 'memory://', workers: {mail: {command: w, scaling: {min: 0, max: 3, "
        "target: {queue_depth_per_replica: 10}}}}}")
    assert group_policies(config) == {
        "api": PolicySpec(min=1, max=8, targets=Targets(cpu_percent=70, p95_latency=0.25),
                          scale_down=Rule(300.0, Step(percent=50))),
        "mail": PolicySpec(min=0, max=3, targets=Targets(queue_depth_per_replica=10)),
    }


def test_scale_to_zero_without_a_queue_target_is_refused_with_one_sentence():
    """`min: 0` cannot wake without a queue target: `surge check` says so at `min` (for
    services and job workers alike), and so does a spec built from a mapping or in code."""
    text = (
        "services: {api: {process: {command: 'x {port}'}, scaling: {min: 0, max: 2, "
        "target: {cpu_percent: 70}}}}\n"
        "jobs: {broker: 'memory://', workers: {mail: {command: w, scaling: {min: 0, max: 3, "
        "target: {cpu_percent: 50}}}}}")
    wake = "scaling.min: 0 needs a queue_depth_per_replica target to wake on"
    with pytest.raises(ConfigError) as error:
        parse(text)
    assert error.value.problems == [f"services.api.{wake}", f"jobs.workers.mail.{wake}"]
    with pytest.raises(ConfigError) as error:
        policy_at("services.api", {"min": 0, "max": 2, "target": {"cpu_percent": 70}})
    assert error.value.problems == [f"services.api.{wake}"]
    with pytest.raises(ValueError, match="^min: 0 needs a queue_depth_per_replica target"):
        PolicySpec(min=0, max=2, targets=CPU70)


def test_the_autoscaler_reads_every_target_the_config_offers():
    """The targets are one list: a target added to the model and not to `Targets` would be
    accepted in the file and then dropped on the way to the policy."""
    from dataclasses import fields

    from surge.config.models_services import TargetSpec

    assert list(TargetSpec.model_fields) == [f.name for f in fields(Targets)]
