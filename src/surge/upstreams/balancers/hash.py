"""Consistent hashing on a ketama ring: each upstream owns `VNODES_PER_WEIGHT * weight` points
of a 64-bit ring (8-byte hashes, compared as big-endian numbers); a key belongs to the first
point at or after its own hash. Adding one upstream to N moves only the keys that land on its
new points (about 1/(N+1) of them); removing one moves only the keys it owned. Positions depend
only on addresses, so every gateway process and every rebuild agrees, whatever the order of the
upstreams.

Hashes use blake2b (stable across processes), never Python's per-process randomised `hash()`.
Slow start does not apply: a key's upstream must not depend on the time."""

from __future__ import annotations

import random
from bisect import bisect_left
from collections.abc import Collection, Sequence
from hashlib import blake2b

from surge.upstreams.balancers.base import Balancer
from surge.upstreams.balancers.pool import usable
from surge.upstreams.upstream import Upstream

# Points per unit of weight: ~8% spread in each upstream's share, as libketama's 160.
VNODES_PER_WEIGHT = 160


def stable_hash(text: str) -> bytes:
    """A 64-bit hash of `text`, the same in every process and on every machine. Kept as 8 bytes:
    bytes compare like the big-endian integers they spell, and skipping the conversion to `int`
    saves a third of a pick."""
    return blake2b(text.encode(), digest_size=8).digest()


class HashBalancer(Balancer):
    __slots__ = ("_rng", "_upstreams", "_points", "_owners")

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._upstreams: list[Upstream] = []
        self._points: list[bytes] = []
        self._owners: list[Upstream] = []

    def update(self, upstreams: Sequence[Upstream]) -> None:
        ups = usable(upstreams)
        # The address breaks the (astronomically rare) tie of two equal points, not list order.
        ring = sorted(
            (stable_hash(f"{u.address}-{i}"), u.address, u)
            for u in ups
            for i in range(VNODES_PER_WEIGHT * u.weight)
        )
        self._upstreams = ups
        self._points = [point for point, _, _ in ring]
        self._owners = [owner for _, _, owner in ring]

    def pick(
        self, now: float, key: str | None = None, exclude: Collection[Upstream] = ()
    ) -> Upstream | None:
        owners = self._owners
        size = len(owners)
        if not size:
            return None
        if key is None:
            # A random ring point: a random upstream in proportion to its weight.
            i = int(self._rng.random() * size)
        else:
            i = bisect_left(self._points, stable_hash(key))
            if i == size:
                i = 0
        owner = owners[i]
        if not exclude or owner not in exclude:
            return owner
        return self._walk(i, exclude)

    def _walk(self, i: int, exclude: Collection[Upstream]) -> Upstream | None:
        """The next distinct upstream clockwise that this request has not tried yet."""
        if all(u in exclude for u in self._upstreams):
            return None
        owners = self._owners
        size = len(owners)
        while True:
            i += 1
            if i == size:
                i = 0
            if owners[i] not in exclude:
                return owners[i]
