"""The pure algorithms, with explicit `now`: no store, no clock, no sleeps."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from surge.config.units import Rate
from surge.ratelimit.algorithms import (
    FixedWindow,
    Gcra,
    Shaping,
    SlidingWindow,
    _multi_gcra,
    _single_gcra,
    make_policy,
)

PER_SECOND = Rate(10, 1.0)
PER_HOUR = Rate(1000, 3600.0)


def run(policy, times, cost=1, state=None):
    """Feed requests at `times`; return the list of (allowed, remaining) and the state."""
    out = []
    for now in times:
        decision, new = policy.decide(state, now, cost)
        if new is not None:
            state = new
        out.append((decision.allowed, decision.remaining))
    return out, state


def test_gcra_admits_a_burst_of_exactly_the_limit_then_rejects():
    out, _ = run(Gcra([Rate(5, 1.0)]), [100.0] * 7)
    assert out == [(True, 4), (True, 3), (True, 2), (True, 1), (True, 0), (False, 0), (False, 0)]


def test_gcra_refills_one_token_per_interval():
    policy = Gcra([Rate(5, 1.0)])
    _, state = run(policy, [100.0] * 5)
    decision, _ = policy.decide(state, 100.1, 1)  # 0.1 s later: one new token (0.2 s each)
    assert not decision.allowed
    assert decision.retry_after == pytest.approx(0.1)
    decision, _ = policy.decide(state, 100.2, 1)
    assert decision.allowed and decision.remaining == 0


def test_gcra_reset_after_is_the_time_until_the_bucket_is_full_again():
    decision, _ = Gcra([Rate(10, 10.0)]).decide(None, 50.0, 3)
    assert decision.remaining == 7
    assert decision.reset_after == pytest.approx(3.0)


def test_gcra_weighted_cost_takes_that_many_tokens():
    out, _ = run(Gcra([Rate(10, 1.0)]), [5.0, 5.0, 5.0], cost=4)
    assert out == [(True, 6), (True, 2), (False, 2)]


def test_a_cost_above_the_limit_is_never_admitted_and_says_so():
    decision, new = Gcra([Rate(3, 1.0)]).decide(None, 0.0, 4)
    assert not decision.allowed and new is None
    assert decision.retry_after == math.inf


def test_a_peek_with_cost_zero_consumes_nothing():
    policy = Gcra([Rate(3, 1.0)])
    decision, new = policy.decide(None, 0.0, 0)
    assert decision.allowed and decision.remaining == 3 and new is None


def test_fixed_window_counts_per_aligned_window():
    policy = FixedWindow([Rate(3, 10.0)])
    out, _ = run(policy, [20.0, 21.0, 29.0, 29.9, 30.0])
    assert out == [(True, 2), (True, 1), (True, 0), (False, 0), (True, 2)]


def test_fixed_window_retry_after_is_the_end_of_the_window():
    policy = FixedWindow([Rate(1, 10.0)])
    _, state = run(policy, [20.0])
    decision, _ = policy.decide(state, 23.0, 1)
    assert decision.retry_after == pytest.approx(7.0)


def test_sliding_window_weights_the_previous_window_by_its_overlap():
    policy = SlidingWindow([Rate(10, 10.0)])
    _, state = run(policy, [15.0] * 10)  # window [10, 20) is full
    # at 25 the previous window still weighs 10 * 0.5 = 5: five more fit, not six
    out, _ = run(policy, [25.0] * 6, state=state)
    assert [a for a, _ in out] == [True] * 5 + [False]


def test_sliding_window_forgets_a_window_two_periods_old():
    policy = SlidingWindow([Rate(2, 10.0)])
    _, state = run(policy, [15.0, 15.0])
    out, _ = run(policy, [31.0, 31.0], state=state)
    assert out == [(True, 1), (True, 0)]


@pytest.mark.parametrize("algorithm", ["gcra", "fixed_window", "sliding_window"])
def test_a_request_rejected_by_the_hourly_limit_consumes_nothing_from_the_per_second_one(
    algorithm,
):
    policy = make_policy(algorithm, [PER_SECOND, Rate(3, 3600.0)])
    out, state = run(policy, [1.0, 1.0, 1.0, 1.0, 1.0])
    assert [a for a, _ in out] == [True, True, True, False, False]
    # per second: 3 of 10 used; the two rejected requests did not count
    per_second = make_policy(algorithm, [PER_SECOND])
    _, alone = run(per_second, [1.0, 1.0, 1.0])
    assert state[0] == (alone if algorithm == "gcra" else alone[0])


def test_multi_limit_reports_the_limit_closest_to_exhaustion():
    policy = Gcra([PER_SECOND, Rate(4, 3600.0)])
    decision, _ = policy.decide(None, 0.0, 1)
    assert (decision.tightest, decision.remaining) == (1, 3)


def test_multi_limit_retry_after_waits_for_every_rejecting_limit():
    policy = Gcra([Rate(1, 1.0), Rate(2, 100.0)])
    _, state = run(policy, [0.0, 1.0])
    decision, _ = policy.decide(state, 1.0, 1)
    assert not decision.allowed
    assert decision.retry_after == pytest.approx(49.0)  # the 100 s limit frees a token at t=50


def test_shaping_delays_a_burst_instead_of_rejecting_it():
    policy = Shaping([Rate(10, 1.0)], max_delay=0.25)
    delays = []
    state = None
    for _ in range(4):
        decision, new = policy.decide(state, 0.0, 1)
        state = new or state
        delays.append((decision.allowed, round(decision.delay, 3)))
    assert delays == [(True, 0.0), (True, 0.1), (True, 0.2), (False, 0.0)]


def test_shaping_rejection_says_when_the_queue_has_room():
    policy = Shaping([Rate(10, 1.0)], max_delay=0.1)
    _, state = run(policy, [0.0, 0.0])
    decision, _ = policy.decide(state, 0.0, 1)
    assert not decision.allowed and decision.retry_after == pytest.approx(0.1)


def test_unknown_algorithm_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="gcra"):
        make_policy("token_bucket", [PER_SECOND])


@given(
    st.lists(st.tuples(st.floats(0, 5), st.integers(0, 4)), min_size=1, max_size=40),
    st.integers(1, 20),
    st.sampled_from([0.5, 1.0, 10.0]),
)
def test_the_single_limit_fast_path_agrees_with_the_general_one(steps, limit, period):
    fast, general = _single_gcra((Rate(limit, period),)), _multi_gcra((Rate(limit, period),))
    fast_state = generic_state = None
    now = 1000.0
    for advance, cost in steps:
        now += advance
        a, fast_new = fast(fast_state, now, cost)
        b, generic_new = general(generic_state, now, cost)
        # a full bucket's answer is a constant: its reset is the exact interval, where the
        # general path's (now + interval) - now may differ in the last bits
        assert a._replace(reset_after=0.0) == b._replace(reset_after=0.0)
        assert a.reset_after == pytest.approx(b.reset_after, abs=1e-9)
        fast_state = fast_new if fast_new is not None else fast_state
        generic_state = generic_new if generic_new is not None else generic_state
        assert (fast_state,) == generic_state or fast_state is None
