"""Each balancer's own promise: the distribution it produces over many seeded picks, the exact
smooth-WRR sequence, p2c's and least_conn's preference for the less loaded upstream."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from surge.upstreams.balancers import weighted
from surge.upstreams.balancers.least_conn import LeastConnBalancer
from surge.upstreams.balancers.p2c import P2CBalancer
from surge.upstreams.balancers.random import RandomBalancer
from surge.upstreams.balancers.round_robin import RoundRobinBalancer
from surge.upstreams.balancers.weighted import WeightedBalancer
from surge.upstreams.upstream import Upstream

NOW = 1000.0


def named(*weights: int, **kwargs: object) -> list[Upstream]:
    return [Upstream(f"10.0.0.{i}:8000", weight=w, **kwargs) for i, w in enumerate(weights)]


def shares(balancer: object, ups: list[Upstream], picks: int, now: float = NOW) -> list[float]:
    counts = Counter(balancer.pick(now) for _ in range(picks))  # type: ignore[attr-defined]
    return [counts[u] / picks for u in ups]


# -- p2c --------------------------------------------------------------------------------------


def test_p2c_prefers_the_less_loaded_of_two() -> None:
    busy, idle = named(1, 1)
    busy.inflight = 5
    balancer = P2CBalancer(random.Random(7))
    balancer.update([busy, idle])
    assert {balancer.pick(NOW) for _ in range(100)} == {idle}


def test_p2c_prefers_the_faster_of_two_at_equal_load() -> None:
    slow, fast = named(1, 1)
    slow.ewma, fast.ewma = 0.200, 0.010
    balancer = P2CBalancer(random.Random(7))
    balancer.update([slow, fast])
    assert {balancer.pick(NOW) for _ in range(100)} == {fast}


def test_p2c_never_picks_the_single_worst_upstream_of_several() -> None:
    ups = named(1, 1, 1, 1)
    ups[2].inflight = 10
    balancer = P2CBalancer(random.Random(7))
    balancer.update(ups)
    assert ups[2] not in {balancer.pick(NOW) for _ in range(1000)}


def test_p2c_spreads_evenly_over_equal_idle_upstreams() -> None:
    ups = named(1, 1, 1, 1, 1)
    balancer = P2CBalancer(random.Random(7))
    balancer.update(ups)
    for share in shares(balancer, ups, 20_000):
        assert share == pytest.approx(0.2, abs=0.02)


def test_p2c_divides_the_score_by_weight() -> None:
    light, heavy = named(1, 3)
    light.inflight = heavy.inflight = 2
    balancer = P2CBalancer(random.Random(7))
    balancer.update([light, heavy])
    assert balancer.pick(NOW) is heavy


def test_p2c_sends_a_slow_starting_upstream_less_than_its_full_weight() -> None:
    old = Upstream("10.0.0.1:8000", added_at=0.0, slow_start=60.0)
    new = Upstream("10.0.0.2:8000", added_at=NOW, slow_start=60.0)
    old.inflight = 1
    balancer = P2CBalancer(random.Random(7))
    balancer.update([old, new])
    # At 10% weight the newcomer's score is 10x, worse than the old one's 2x.
    assert balancer.pick(NOW) is old
    assert balancer.pick(NOW + 60.0) is new


# -- round robin ------------------------------------------------------------------------------


def test_round_robin_takes_each_upstream_in_turn() -> None:
    a, b, c = named(5, 1, 1)
    balancer = RoundRobinBalancer()
    balancer.update([a, b, c])
    assert [balancer.pick(NOW) for _ in range(7)] == [a, b, c, a, b, c, a]


def test_round_robin_skips_an_excluded_upstream_to_the_next() -> None:
    a, b, c = named(1, 1, 1)
    balancer = RoundRobinBalancer()
    balancer.update([a, b, c])
    assert balancer.pick(NOW) is a
    assert balancer.pick(NOW, exclude=(b,)) is c
    assert balancer.pick(NOW) is a


# -- smooth weighted round robin --------------------------------------------------------------


def test_weighted_follows_nginx_smooth_sequence_for_5_1_1() -> None:
    a, b, c = named(5, 1, 1)
    balancer = WeightedBalancer()
    balancer.update([a, b, c])
    expected = [a, a, b, a, c, a, a]
    assert [balancer.pick(NOW) for _ in range(14)] == expected + expected


def test_weighted_live_loop_gives_the_same_sequence_as_the_schedule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(weighted, "MAX_SCHEDULE", 0)
    a, b, c = named(5, 1, 1)
    balancer = WeightedBalancer()
    balancer.update([a, b, c])
    assert [balancer.pick(NOW) for _ in range(7)] == [a, a, b, a, c, a, a]


def test_weighted_shares_are_exact_over_whole_periods() -> None:
    ups = named(30, 20, 10)
    balancer = WeightedBalancer()
    balancer.update(ups)
    assert shares(balancer, ups, 600) == pytest.approx([0.5, 1 / 3, 1 / 6])


def test_weighted_ramps_a_slow_starting_upstream_then_returns_to_static_weights() -> None:
    old = Upstream("10.0.0.1:8000", weight=1, added_at=0.0, slow_start=10.0)
    new = Upstream("10.0.0.2:8000", weight=1, added_at=NOW, slow_start=100.0)
    balancer = WeightedBalancer()
    balancer.update([old, new])
    # Weights 1 and 0.1 while the newcomer starts: it gets 1 pick in 11.
    assert shares(balancer, [old, new], 1100) == pytest.approx([10 / 11, 1 / 11])
    assert shares(balancer, [old, new], 1000, now=NOW + 100.0) == [0.5, 0.5]


def test_weighted_skips_an_excluded_upstream_without_stalling() -> None:
    a, b, c = named(5, 1, 1)
    balancer = WeightedBalancer()
    balancer.update([a, b, c])
    assert [balancer.pick(NOW, exclude=(a,)) for _ in range(2)] == [b, c]


# -- least connections ------------------------------------------------------------------------


def test_least_conn_picks_the_fewest_in_flight() -> None:
    ups = named(1, 1, 1)
    ups[0].inflight, ups[1].inflight, ups[2].inflight = 3, 1, 2
    balancer = LeastConnBalancer()
    balancer.update(ups)
    assert {balancer.pick(NOW) for _ in range(10)} == {ups[1]}


def test_least_conn_breaks_a_tie_by_the_heavier_weight() -> None:
    ups = named(1, 3, 2)
    balancer = LeastConnBalancer()
    balancer.update(ups)
    assert {balancer.pick(NOW) for _ in range(10)} == {ups[1]}


def test_least_conn_lets_equal_upstreams_take_turns() -> None:
    ups = named(1, 1, 1)
    balancer = LeastConnBalancer()
    balancer.update(ups)
    assert shares(balancer, ups, 300) == pytest.approx([1 / 3] * 3)


def test_least_conn_tracks_in_flight_counts_as_requests_start() -> None:
    ups = named(1, 1, 1, 1)
    balancer = LeastConnBalancer()
    balancer.update(ups)
    for _ in range(40):
        picked = balancer.pick(NOW)
        assert picked is not None
        picked.inflight += 1
    assert [u.inflight for u in ups] == [10, 10, 10, 10]


def test_least_conn_uses_ramped_weight_for_ties_during_slow_start() -> None:
    old = Upstream("10.0.0.1:8000", weight=1, added_at=0.0)
    new = Upstream("10.0.0.2:8000", weight=2, added_at=NOW, slow_start=100.0)
    balancer = LeastConnBalancer()
    balancer.update([old, new])
    assert balancer.pick(NOW) is old
    assert balancer.pick(NOW + 100.0) is new


# -- weighted random --------------------------------------------------------------------------


def test_random_picks_in_proportion_to_weight() -> None:
    ups = named(1, 2, 3)
    balancer = RandomBalancer(random.Random(11))
    balancer.update(ups)
    assert shares(balancer, ups, 30_000) == pytest.approx([1 / 6, 2 / 6, 3 / 6], abs=0.015)


def test_random_spreads_evenly_over_equal_weights() -> None:
    ups = named(2, 2, 2, 2)
    balancer = RandomBalancer(random.Random(11))
    balancer.update(ups)
    assert shares(balancer, ups, 20_000) == pytest.approx([0.25] * 4, abs=0.015)


def test_random_gives_a_slow_starting_upstream_its_ramped_share() -> None:
    old = Upstream("10.0.0.1:8000", weight=1, added_at=0.0)
    new = Upstream("10.0.0.2:8000", weight=1, added_at=NOW - 50.0, slow_start=100.0)
    balancer = RandomBalancer(random.Random(11))
    balancer.update([old, new])
    # Half-way through its ramp the newcomer weighs 0.5: a third of the picks.
    assert shares(balancer, [old, new], 20_000) == pytest.approx([2 / 3, 1 / 3], abs=0.015)


def test_random_with_an_exclusion_picks_among_the_rest_by_weight() -> None:
    ups = named(5, 1, 3)
    balancer = RandomBalancer(random.Random(11))
    balancer.update(ups)
    counts = Counter(balancer.pick(NOW, exclude=(ups[0],)) for _ in range(20_000))
    assert counts[ups[2]] / 20_000 == pytest.approx(0.75, abs=0.015)
