"""The balancers by the name `surge.yaml` uses in `services.*.balance`, and the factory that
builds one; each strategy lives in its own module beside this one.

`BALANCERS` is the one list of names: the config model's `balance` choices are read from it,
so a strategy added here is accepted in surge.yaml, listed in its schema and built here."""

from __future__ import annotations

import random
from collections.abc import Callable

from surge.upstreams.balancers.base import Balancer
from surge.upstreams.balancers.hash import HashBalancer
from surge.upstreams.balancers.least_conn import LeastConnBalancer
from surge.upstreams.balancers.p2c import P2CBalancer
from surge.upstreams.balancers.random import RandomBalancer
from surge.upstreams.balancers.round_robin import RoundRobinBalancer
from surge.upstreams.balancers.weighted import WeightedBalancer

# name -> factory; `rng` feeds the strategies that draw random numbers. The order is the one
# the docs and the schema list them in, the default first.
BALANCERS: dict[str, Callable[[random.Random | None], Balancer]] = {
    "p2c": lambda rng: P2CBalancer(rng),
    "round_robin": lambda rng: RoundRobinBalancer(),
    "weighted": lambda rng: WeightedBalancer(),
    "least_conn": lambda rng: LeastConnBalancer(),
    "hash": lambda rng: HashBalancer(rng),
    "random": lambda rng: RandomBalancer(rng),
}


def make_balancer(name: str, rng: random.Random | None = None) -> Balancer:
    """A new, empty balancer of strategy `name` (call `update()` before `pick()`). `rng` feeds
    the strategies that draw random numbers (p2c, random, hash without a key)."""
    factory = BALANCERS.get(name)
    if factory is None:
        raise ValueError(f"unknown balancer {name!r}; expected one of {', '.join(BALANCERS)}")
    return factory(rng)


__all__ = ["BALANCERS", "Balancer", "make_balancer"]
