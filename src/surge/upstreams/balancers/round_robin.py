"""Round robin: each eligible upstream in turn, weights ignored. Excluded upstreams are skipped
without losing their turn for later requests."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from surge.upstreams.balancers.base import Balancer
from surge.upstreams.balancers.candidates import usable
from surge.upstreams.upstream import Upstream


class RoundRobinBalancer(Balancer):
    __slots__ = ("_upstreams", "_next")

    def __init__(self) -> None:
        self._upstreams: list[Upstream] = []
        self._next = 0

    def update(self, upstreams: Sequence[Upstream]) -> None:
        self._upstreams = usable(upstreams)
        # Keep the position (modulo the new size) so a set change does not restart at the first.
        self._next = self._next % len(self._upstreams) if self._upstreams else 0

    def pick(
        self, now: float, key: str | None = None, exclude: Collection[Upstream] = ()
    ) -> Upstream | None:
        ups = self._upstreams
        n = len(ups)
        if not n:
            return None
        i = self._next
        for _ in range(n):
            u = ups[i]
            i += 1
            if i == n:
                i = 0
            if not exclude or u not in exclude:
                self._next = i
                return u
        return None
