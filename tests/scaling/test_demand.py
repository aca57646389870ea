"""Demand that a saturated CPU hides, and the CPU proposal it raises. Pure: no clock."""

from __future__ import annotations

import pytest

from surge.scaling.demand import Demand, DemandEstimate
from surge.scaling.policy import Sample, ScalingPolicy
from surge.scaling.spec import PolicySpec, Rule, Step, Targets

UNLIMITED = Rule(0.0, Step())


def saturated(now: float, replicas: int, inflight: float) -> list[Sample]:
    """Replicas at 100% CPU answering 100 req/s each (10 ms of CPU per request), with
    `inflight` requests at the gateway spread over them."""
    return [Sample(at=now, replica=f"r{i}", cpu_percent=100, request_rate=100,
                   inflight=inflight / replicas) for i in range(replicas)]


def test_demand_prices_requests_with_the_cpu_they_cost_and_counts_the_queue_growth():
    estimate = DemandEstimate()
    first = estimate.update({"a": 100}, {"a": 100}, {"a": 51}, now=0.0)
    assert first == Demand(served=100, arriving=100, queued=50, cost=0.01)
    second = estimate.update({"a": 100}, {"a": 100}, {"a": 251}, now=2.0)
    assert second == Demand(served=100, arriving=200, queued=250, cost=0.01)
    assert second.cores(horizon=2.0) == pytest.approx(2.0 + 1.25)


def test_a_draining_queue_adds_no_arrivals():
    estimate = DemandEstimate()
    estimate.update({"a": 100}, {"a": 100}, {"a": 300}, now=0.0)
    demand = estimate.update({"a": 100}, {"a": 100}, {"a": 100}, now=2.0)
    assert demand is not None and demand.arriving == 100


def test_the_first_busy_reading_after_an_idle_one_counts_its_queue_as_arrivals():
    estimate = DemandEstimate()
    assert estimate.update({"a": 0}, {"a": 0}, {"a": 0}, now=0.0) is None
    demand = estimate.update({"a": 100}, {"a": 100}, {"a": 201}, now=2.0)
    assert demand == Demand(served=100, arriving=200, queued=200, cost=0.01)


def test_a_stuck_reading_leaves_the_queue_unknown():
    estimate = DemandEstimate()
    estimate.update({"a": 0}, {"a": 0}, {"a": 5}, now=0.0)  # in flight, none answered
    demand = estimate.update({"a": 100}, {"a": 100}, {"a": 201}, now=2.0)
    assert demand is not None and demand.arriving == 100


@pytest.mark.parametrize(
    ("cpu", "rate", "inflight"),
    [({}, {}, {}), ({"a": 50}, {"a": 0}, {"a": 0}), ({"a": 50}, {}, {"a": 1}),
     ({"a": 0}, {"a": 10}, {"a": 1})],
)
def test_without_a_replica_that_answered_and_used_cpu_there_is_no_estimate(cpu, rate, inflight):
    assert DemandEstimate().update(cpu, rate, inflight, now=0.0) is None


def test_a_saturated_replica_with_a_growing_queue_scales_to_drain_it_not_just_to_carry_it():
    policy = ScalingPolicy(PolicySpec(min=1, max=20, targets=Targets(cpu_percent=70),
                               scale_up=UNLIMITED))
    policy.decide(saturated(0.0, 1, inflight=1), 1, 0.0)
    decision = policy.decide(saturated(2.0, 1, inflight=201), 1, 2.0)
    # 200 req/s arriving (100 answered + the queue growing by 100/s) and 200 queued, drained
    # within a control period: 3 cores, at 70% per replica -> 5. CPU alone says 100/70 -> 2.
    assert decision.desired == 5
    assert decision.reason.startswith("cpu demand 3.00 cores (200 req/s arriving, 200 queued)")


def test_hpas_algorithm_without_demand_sees_only_the_capped_cpu():
    policy = ScalingPolicy(PolicySpec(min=1, max=20, targets=Targets(cpu_percent=70),
                               scale_up=UNLIMITED, demand=False))
    policy.decide(saturated(0.0, 1, inflight=1), 1, 0.0)
    assert policy.decide(saturated(2.0, 1, inflight=201), 1, 2.0).desired == 2


def test_demand_changes_nothing_when_replicas_keep_up():
    policy = ScalingPolicy(PolicySpec(min=1, max=20, targets=Targets(cpu_percent=70),
                               scale_up=UNLIMITED, scale_down=UNLIMITED))
    calm = [Sample(at=t, replica=f"r{i}", cpu_percent=35, request_rate=35, inflight=0.4)
            for t in (2.0, 4.0) for i in range(4)]
    assert policy.decide(calm[:4], 4, 2.0).desired == 2  # 1.4 cores / 0.7, as CPU says
    assert policy.decide(calm[4:], 2, 4.0).reason.startswith("cpu_percent")


def test_many_long_requests_in_flight_are_no_shortage_while_their_number_holds():
    policy = ScalingPolicy(PolicySpec(min=1, max=20, targets=Targets(cpu_percent=70),
                               scale_up=UNLIMITED))
    # 500 long polls held open, cheap to serve: 40% CPU, 100 answers/s.
    polls = [[Sample(at=t, replica="r0", cpu_percent=40, request_rate=100, inflight=500)]
             for t in (2.0, 4.0)]
    assert [policy.decide(samples, 1, samples[0].at).desired for samples in polls] == [1, 1]
