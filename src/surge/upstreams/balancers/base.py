"""The interface every balancer implements. One module per strategy lives beside this one;
each is pure (randomness injected) and sees only the eligible upstreams of one service."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence

from surge.upstreams.upstream import Upstream


class Balancer(ABC):
    @abstractmethod
    def update(self, upstreams: Sequence[Upstream]) -> None:
        """The eligible set changed (called from the control side, not per request)."""

    @abstractmethod
    def pick(
        self, now: float, key: str | None = None, exclude: Collection[Upstream] = ()
    ) -> Upstream | None:
        """The upstream for one request, or None when none is eligible. `key` is the hash key
        (only `hash` uses it); `exclude` holds upstreams already tried by this request."""
