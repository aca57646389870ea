"""What every balancer derives from the eligible set in `update()`: the usable upstreams, the
time until which some of them are still slow-starting, and the slow path for `exclude`.

Only set-up work and the retry path live here; nothing in this module runs on an ordinary pick.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from math import gcd

from surge.upstreams.upstream import Upstream

# `now` values before this are "still ramping"; no upstream ramps -> every `now` is past it.
NO_RAMP = float("-inf")


def usable(upstreams: Sequence[Upstream]) -> list[Upstream]:
    """The upstreams a balancer may return: eligible, with a positive weight (weight 0 means
    "keep it registered but send it nothing")."""
    return [u for u in upstreams if u.eligible and u.weight > 0]


def ramp_end(upstreams: Sequence[Upstream]) -> float:
    """The moment the last slow start completes; before it, picks must use `weight_at(now)`."""
    ends = [u.added_at + u.slow_start for u in upstreams if u.slow_start > 0.0]
    return max(ends) if ends else NO_RAMP


def allowed(upstreams: Sequence[Upstream], exclude: Collection[Upstream]) -> list[Upstream]:
    """The upstreams not yet tried by this request (the retry path: may allocate)."""
    return [u for u in upstreams if u not in exclude]


def reduced(weights: Sequence[int]) -> list[int]:
    """The weights divided by their common divisor: the same proportions in fewer units (a
    shorter smooth-WRR period, fewer hash-ring points)."""
    divisor = 0
    for w in weights:
        divisor = gcd(divisor, w)
    return [w // divisor for w in weights]
