"""Weighted random: each upstream with probability weight / total. Cumulative weights are built
in `update()`, so a pick is one random number and one bisection; only while an upstream is
slow-starting (or when redraws keep hitting excluded upstreams) are they rebuilt for the pick."""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Collection, Sequence
from itertools import accumulate

from surge.upstreams.balancers.base import Balancer
from surge.upstreams.balancers.candidates import NO_RAMP, allowed, ramp_end, usable
from surge.upstreams.upstream import Upstream

# Draws that may land on excluded upstreams before the retry path builds the allowed list.
REDRAWS = 4


class RandomBalancer(Balancer):
    __slots__ = ("_rng", "_upstreams", "_cumulative", "_uniform", "_ramp_end")

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._upstreams: list[Upstream] = []
        self._cumulative: list[float] = []
        self._uniform = True
        self._ramp_end = NO_RAMP

    def update(self, upstreams: Sequence[Upstream]) -> None:
        ups = usable(upstreams)
        self._upstreams = ups
        self._cumulative = list(accumulate(float(u.weight) for u in ups))
        self._uniform = len({u.weight for u in ups}) <= 1
        self._ramp_end = ramp_end(ups)

    def pick(
        self, now: float, key: str | None = None, exclude: Collection[Upstream] = ()
    ) -> Upstream | None:
        ups = self._upstreams
        n = len(ups)
        if not n or now < self._ramp_end:
            return self._pick_among(allowed(ups, exclude) if exclude else ups, now)
        # Redrawing on an excluded upstream samples exactly "by weight among the others" and
        # costs nothing extra on a first try; after a few misses, build the list of the rest.
        for _ in range(REDRAWS):
            if self._uniform:
                u = ups[int(self._rng.random() * n)]
            else:
                cumulative = self._cumulative
                # hi=n-1 keeps a product rounded up to the total inside the list.
                u = ups[bisect_right(cumulative, self._rng.random() * cumulative[-1], 0, n - 1)]
            if not exclude or u not in exclude:
                return u
        return self._pick_among(allowed(ups, exclude), now)

    def _pick_among(self, ups: Sequence[Upstream], now: float) -> Upstream | None:
        if not ups:
            return None
        cumulative = list(accumulate(u.weight_at(now) for u in ups))
        return ups[bisect_right(cumulative, self._rng.random() * cumulative[-1], 0, len(ups) - 1)]
