"""The balancers by the name `surge.yaml` uses in `services.*.balance`, and the factory that
builds one; each strategy lives in its own module beside this one."""

from __future__ import annotations

import random

from surge.upstreams.balancers.base import Balancer
from surge.upstreams.balancers.hash import HashBalancer
from surge.upstreams.balancers.least_conn import LeastConnBalancer
from surge.upstreams.balancers.p2c import P2CBalancer
from surge.upstreams.balancers.random import RandomBalancer
from surge.upstreams.balancers.round_robin import RoundRobinBalancer
from surge.upstreams.balancers.weighted import WeightedBalancer

BALANCERS = ("p2c", "round_robin", "weighted", "least_conn", "hash", "random")


def make_balancer(name: str, rng: random.Random | None = None) -> Balancer:
    """A new, empty balancer of strategy `name` (call `update()` before `pick()`). `rng` feeds
    the strategies that draw random numbers (p2c, random, hash without a key)."""
    if name == "p2c":
        return P2CBalancer(rng)
    if name == "random":
        return RandomBalancer(rng)
    if name == "hash":
        return HashBalancer(rng)
    if name == "round_robin":
        return RoundRobinBalancer()
    if name == "weighted":
        return WeightedBalancer()
    if name == "least_conn":
        return LeastConnBalancer()
    raise ValueError(f"unknown balancer {name!r}; expected one of {', '.join(BALANCERS)}")


__all__ = ["BALANCERS", "Balancer", "make_balancer"]
