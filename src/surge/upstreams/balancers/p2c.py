"""Power of two choices (the default balancer): two distinct random upstreams, the one with the
lower expected wait wins. The score `(inflight + 1) * ewma / weight` estimates how long a new
request would queue there, so a slow or busy replica loses to an idle fast one, while the random
pair keeps a herd of gateways from piling onto the single best upstream."""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence

from surge.upstreams.balancers.base import Balancer
from surge.upstreams.balancers.candidates import NO_RAMP, allowed, ramp_end, usable
from surge.upstreams.upstream import Upstream


class P2CBalancer(Balancer):
    __slots__ = ("_rng", "_upstreams", "_ramp_end")

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._upstreams: list[Upstream] = []
        self._ramp_end = NO_RAMP

    def update(self, upstreams: Sequence[Upstream]) -> None:
        self._upstreams = usable(upstreams)
        self._ramp_end = ramp_end(self._upstreams)

    def pick(
        self, now: float, key: str | None = None, exclude: Collection[Upstream] = ()
    ) -> Upstream | None:
        ups = allowed(self._upstreams, exclude) if exclude else self._upstreams
        n = len(ups)
        if n < 2:
            return ups[0] if n else None
        # One draw gives both indices: its integer part picks the first, its fraction the second
        # among the other n - 1 (53 random bits are ample for any realistic n).
        x = self._rng.random() * n
        i = int(x)
        j = int((x - i) * (n - 1))
        if j >= i:
            j += 1
        a = ups[i]
        b = ups[j]
        if now < self._ramp_end:
            wa = a.weight_at(now)
            wb = b.weight_at(now)
        else:
            wa = float(a.weight)
            wb = float(b.weight)
        # Cross-multiplied comparison of (inflight + 1) * ewma / weight: no division.
        if (b.inflight + 1) * b.ewma * wa < (a.inflight + 1) * a.ewma * wb:
            return b
        return a
