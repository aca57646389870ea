"""Consistent hashing on a ketama ring: each upstream owns points of a 64-bit ring (8-byte
hashes, compared as big-endian numbers) in proportion to its weight (`point_counts`); a key
belongs to the first point at or after its own hash. Adding one upstream to N moves only the
keys that land on its new points (about 1/(N+1) of them); removing one moves only the keys it
owned. Positions depend only on addresses, so every gateway process and every rebuild agrees,
whatever the order of the upstreams. (A weight change, or a ring growing past `MAX_POINTS`,
changes other upstreams' point counts too, and so moves a few more keys.)

Hashes use blake2b (stable across processes), never Python's per-process randomised `hash()`.
Slow start does not apply: a key's upstream must not depend on the time."""

from __future__ import annotations

import random
from bisect import bisect_left
from collections.abc import Collection, Sequence
from hashlib import blake2b

from surge.upstreams.balancers.base import Balancer
from surge.upstreams.balancers.candidates import reduced, usable
from surge.upstreams.upstream import Upstream

# Points per unit of weight: ~8% spread in each upstream's share, as libketama's 160.
VNODES_PER_WEIGHT = 160
# Ring size cap: a rebuild (control side) stays in the tens of milliseconds whatever the weights.
MAX_POINTS = 16_384


def stable_hash(text: str) -> bytes:
    """A 64-bit hash of `text`, the same in every process and on every machine. Kept as 8 bytes:
    bytes compare like the big-endian integers they spell, and skipping the conversion to `int`
    saves a third of a pick."""
    return blake2b(text.encode(), digest_size=8).digest()


def point_counts(weights: Sequence[int]) -> list[int]:
    """Ring points per upstream: `VNODES_PER_WEIGHT` per unit of (gcd-reduced) weight, scaled
    down in proportion when the ring would exceed `MAX_POINTS`."""
    units = reduced(weights)
    scale = min(1.0, MAX_POINTS / (VNODES_PER_WEIGHT * max(1, sum(units))))
    return [max(1, round(VNODES_PER_WEIGHT * w * scale)) for w in units]


def ring_points(address: str, count: int) -> list[bytes]:
    """The first `count` points of `address`, four per 32-byte hash as ketama does (so more
    points only add to the fewer ones)."""
    points: list[bytes] = []
    for block in range((count + 3) // 4):
        digest = blake2b(f"{address}-{block}".encode(), digest_size=32).digest()
        points.extend(digest[i : i + 8] for i in range(0, 32, 8))
    return points[:count]


class HashBalancer(Balancer):
    __slots__ = ("_rng", "_upstreams", "_points", "_owners")

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._upstreams: list[Upstream] = []
        self._points: list[bytes] = []
        self._owners: list[Upstream] = []

    def update(self, upstreams: Sequence[Upstream]) -> None:
        ups = usable(upstreams)
        counts = point_counts([u.weight for u in ups])
        # The address breaks the (astronomically rare) tie of two equal points, not list order.
        ring = sorted(
            (point, u.address, u)
            for u, count in zip(ups, counts, strict=True)
            for point in ring_points(u.address, count)
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
