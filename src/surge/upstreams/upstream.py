"""One upstream (a replica's address) and the live numbers the balancers read.

The data path mutates only the plain counters here (`inflight`, `ewma`, `answered_at`); health,
ejection and draining are set by the control side, which then rebuilds the service's eligible
list.
No I/O lives here."""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from surge.upstreams.pool import Pool

# Weight of the newest latency sample in the moving average (about the last 10 requests).
EWMA_ALPHA: Final = 0.1
# Latency assumed for an upstream that has not answered yet: optimistic, so it gets tried.
INITIAL_EWMA: Final = 0.001


class Upstream:
    __slots__ = (
        "address", "host", "port", "weight", "id", "inflight", "ewma", "healthy", "ejected",
        "draining", "added_at", "slow_start", "failures", "pool", "panic", "answered_at",
    )
    pool: Pool  # its connection pool, set by the service right after construction

    def __init__(
        self, address: str, weight: int = 1, *, added_at: float = 0.0, slow_start: float = 0.0,
        healthy: bool = True,
    ) -> None:
        host, _, port = address.rpartition(":")
        self.address = address
        self.host = host.strip("[]") or "127.0.0.1"
        self.port = int(port)
        self.weight = weight
        # Stable, short and opaque: the value of a sticky cookie.
        self.id = hashlib.blake2s(address.encode(), digest_size=6).hexdigest()
        self.inflight = 0
        self.ewma = INITIAL_EWMA
        self.healthy = healthy
        self.ejected = False
        self.draining = False
        self.added_at = added_at
        self.slow_start = slow_start
        self.failures = 0  # consecutive failed requests (passive checks)
        self.panic = False  # its service is in panic mode: health is ignored
        # When it last answered a live request well (the gateway's clock): passive evidence
        # that excuses a late active check (see health.py).
        self.answered_at = -math.inf

    @property
    def eligible(self) -> bool:
        """May get new requests."""
        return not self.draining and (self.panic or (self.healthy and not self.ejected))

    def weight_at(self, now: float) -> float:
        """The weight in force at `now`: ramps linearly from 10% to full over `slow_start`."""
        if self.slow_start <= 0.0:
            return float(self.weight)
        ramp = (now - self.added_at) / self.slow_start
        if ramp >= 1.0:
            return float(self.weight)
        return self.weight * max(0.1, ramp)

    def __repr__(self) -> str:
        state = "eligible" if self.eligible else (
            "draining" if self.draining else "ejected" if self.ejected else "unhealthy")
        return f"<Upstream {self.address} w={self.weight} {state} inflight={self.inflight}>"
