"""Least connections: the upstream with the fewest requests in flight; on a tie the heavier
weight wins, and among equals the scan starts one further along each pick, so equal upstreams
take turns instead of the first in the list taking every tie.

A pick scans every upstream (in-flight counts change per request, so nothing can be
precomputed); prefer p2c for large sets."""

from __future__ import annotations

import sys
from collections.abc import Collection, Sequence
from itertools import islice

from surge.upstreams.balancers.base import Balancer
from surge.upstreams.balancers.candidates import NO_RAMP, ramp_end, usable
from surge.upstreams.upstream import Upstream


class LeastConnBalancer(Balancer):
    __slots__ = ("_upstreams", "_twice", "_start", "_ramp_end")

    def __init__(self) -> None:
        self._upstreams: list[Upstream] = []
        self._twice: list[Upstream] = []  # the list twice over: a rotated scan is one slice
        self._start = 0
        self._ramp_end = NO_RAMP

    def update(self, upstreams: Sequence[Upstream]) -> None:
        self._upstreams = usable(upstreams)
        self._twice = self._upstreams * 2
        self._ramp_end = ramp_end(self._upstreams)
        self._start = 0

    def pick(
        self, now: float, key: str | None = None, exclude: Collection[Upstream] = ()
    ) -> Upstream | None:
        n = len(self._upstreams)
        if not n:
            return None
        ramping = now < self._ramp_end
        start = self._start
        self._start = start + 1 if start + 1 < n else 0
        best = None
        best_inflight = sys.maxsize
        best_weight = 0.0
        for u in islice(self._twice, start, start + n):
            if exclude and u in exclude:
                continue
            inflight = u.inflight
            if inflight > best_inflight:
                continue
            weight = u.weight_at(now) if ramping else u.weight
            # Strictly better only: among equals the first from the rotating start wins.
            if inflight < best_inflight or weight > best_weight:
                best = u
                best_inflight = inflight
                best_weight = weight
        return best
