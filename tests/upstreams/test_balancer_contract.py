"""What every balancer promises, whatever its strategy: only eligible upstreams, `exclude`
honoured while any other is left, None only when nothing can be picked."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from surge.upstreams.balancers import BALANCERS, make_balancer
from surge.upstreams.upstream import Upstream

NOW = 1000.0


def upstreams(n: int, **kwargs: object) -> list[Upstream]:
    return [Upstream(f"10.0.0.{i}:8000", **kwargs) for i in range(n)]


each_balancer = pytest.mark.parametrize("name", BALANCERS)


@each_balancer
def test_an_empty_set_picks_none(name: str) -> None:
    balancer = make_balancer(name, random.Random(1))
    balancer.update([])
    assert balancer.pick(NOW, key="k") is None
    assert balancer.pick(NOW) is None


@each_balancer
def test_a_balancer_never_updated_picks_none(name: str) -> None:
    assert make_balancer(name, random.Random(1)).pick(NOW) is None


@each_balancer
def test_a_single_upstream_is_always_picked(name: str) -> None:
    balancer = make_balancer(name, random.Random(1))
    only = upstreams(1)
    balancer.update(only)
    assert {balancer.pick(NOW, key=str(i)) for i in range(50)} == {only[0]}


@each_balancer
def test_ineligible_and_zero_weight_upstreams_are_never_picked(name: str) -> None:
    ups = upstreams(5)
    ups[0].healthy = False
    ups[1].ejected = True
    ups[2].draining = True
    ups[3].weight = 0
    balancer = make_balancer(name, random.Random(1))
    balancer.update(ups)
    assert {balancer.pick(NOW, key=str(i)) for i in range(200)} == {ups[4]}


@each_balancer
def test_every_upstream_gets_picked(name: str) -> None:
    ups = upstreams(4)
    balancer = make_balancer(name, random.Random(1))
    balancer.update(ups)
    assert {balancer.pick(NOW, key=str(i)) for i in range(400)} == set(ups)


@each_balancer
def test_all_excluded_picks_none(name: str) -> None:
    ups = upstreams(3)
    balancer = make_balancer(name, random.Random(1))
    balancer.update(ups)
    assert balancer.pick(NOW, key="k", exclude=ups) is None
    assert balancer.pick(NOW, exclude=set(ups)) is None


@each_balancer
@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 12),
    data=st.data(),
    seed=st.integers(0, 2**32),
    slow_start=st.sampled_from([0.0, 60.0]),
)
def test_exclude_is_honoured_while_any_other_upstream_is_left(
    name: str, n: int, data: st.DataObject, seed: int, slow_start: float
) -> None:
    ups = upstreams(n, added_at=NOW - 10.0, slow_start=slow_start)
    excluded = data.draw(st.sets(st.sampled_from(ups), max_size=n - 1))
    balancer = make_balancer(name, random.Random(seed))
    balancer.update(ups)
    for i in range(20):
        picked = balancer.pick(NOW, key=f"key-{i}", exclude=excluded)
        assert picked is not None and picked not in excluded


def test_unknown_balancer_name_is_refused() -> None:
    with pytest.raises(ValueError, match="least_conn"):
        make_balancer("fastest")
