"""The consistent-hash balancer: a key keeps its upstream across rebuilds and processes, and a
change to the set moves only about the share of keys that it must."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from surge.upstreams.balancers.hash import MAX_POINTS, HashBalancer, point_counts, stable_hash
from surge.upstreams.upstream import Upstream

NOW = 1000.0
KEYS = [f"198.51.{i // 256}.{i % 256}" for i in range(3000)]


def fleet(n: int, start: int = 0) -> list[Upstream]:
    return [Upstream(f"10.1.{i // 200}.{i % 200}:8000") for i in range(start, start + n)]


def owners(ups: list[Upstream], keys: list[str] = KEYS) -> dict[str, str]:
    balancer = HashBalancer(random.Random(0))
    balancer.update(ups)
    return {key: balancer.pick(NOW, key=key).address for key in keys}  # type: ignore[union-attr]


def test_stable_hash_is_the_same_in_every_process_and_release() -> None:
    # Pinned: Python's own hash() differs per run, and a changed hash would move every key.
    assert stable_hash("10.0.0.1").hex() == "538ef646e14d03e6"


def test_hash_maps_the_same_key_to_the_same_upstream_across_rebuilds_and_orderings() -> None:
    ups = fleet(7)
    shuffled = ups[:]
    random.Random(3).shuffle(shuffled)
    fresh = [Upstream(u.address) for u in ups]
    assert owners(ups) == owners(shuffled) == owners(fresh)


def test_hash_spreads_keys_in_proportion_to_weight() -> None:
    ups = [Upstream("10.0.0.1:80", weight=1), Upstream("10.0.0.2:80", weight=3)]
    counts = Counter(owners(ups).values())
    assert counts["10.0.0.2:80"] / len(KEYS) == pytest.approx(0.75, abs=0.06)


@pytest.mark.parametrize(
    ("weights", "counts"),
    [
        ([1, 1, 1], [160, 160, 160]),
        ([2, 4], [160, 320]),
        ([100, 100, 300], [160, 160, 480]),
    ],
)
def test_ring_points_follow_weights_in_lowest_terms(weights: list[int], counts: list[int]) -> None:
    assert point_counts(weights) == counts


def test_the_ring_stays_bounded_whatever_the_weights() -> None:
    counts = point_counts([100, 99, 1])
    assert sum(counts) <= MAX_POINTS + 3
    assert counts[0] / counts[2] == pytest.approx(100, rel=0.02)


def test_hash_walks_to_the_next_distinct_upstream_when_the_owner_is_excluded() -> None:
    ups = fleet(5)
    balancer = HashBalancer(random.Random(0))
    balancer.update(ups)
    for key in KEYS[:200]:
        owner = balancer.pick(NOW, key=key)
        fallback = balancer.pick(NOW, key=key, exclude=(owner,))
        assert fallback is not None and fallback is not owner
        # The walk is deterministic, and it is where the key goes once the owner is gone.
        assert balancer.pick(NOW, key=key, exclude=(owner,)) is fallback
        without = HashBalancer(random.Random(0))
        without.update([u for u in ups if u is not owner])
        assert without.pick(NOW, key=key) is fallback


def test_hash_without_a_key_picks_at_random_by_weight() -> None:
    ups = [Upstream("10.0.0.1:80", weight=1), Upstream("10.0.0.2:80", weight=1)]
    balancer = HashBalancer(random.Random(5))
    balancer.update(ups)
    counts = Counter(balancer.pick(NOW) for _ in range(10_000))
    assert counts[ups[0]] / 10_000 == pytest.approx(0.5, abs=0.08)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 20), start=st.integers(0, 1000))
def test_adding_one_upstream_moves_about_its_fair_share_of_keys(n: int, start: int) -> None:
    before = owners(fleet(n, start))
    after = owners(fleet(n + 1, start))
    newcomer = fleet(n + 1, start)[-1].address
    moved = [key for key in KEYS if before[key] != after[key]]
    # Every moved key moved to the newcomer, and no more of them than its share allows.
    assert all(after[key] == newcomer for key in moved)
    assert len(moved) / len(KEYS) <= 1.5 / (n + 1) + 0.02


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 20), start=st.integers(0, 1000), data=st.data())
def test_removing_one_upstream_moves_only_the_keys_it_owned(
    n: int, start: int, data: st.DataObject
) -> None:
    ups = fleet(n, start)
    gone = data.draw(st.sampled_from(ups))
    before = owners(ups)
    after = owners([u for u in ups if u is not gone])
    moved = {key for key in KEYS if before[key] != after[key]}
    assert moved == {key for key in KEYS if before[key] == gone.address}
