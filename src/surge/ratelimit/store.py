"""Where rate limit state lives: the `Store` interface, the in-process `LocalStore`, and
`open_store(url)` which picks an implementation by URL (`local`/`memory://` or `redis://`).

A store offers one atomic primitive: check and update all of a key's limits for a cost, and
return the decision. The algorithm itself stays in `algorithms` (pure); stores only keep
state. Handling a failing store (`on_store_error`) is the limiter's job, not the store's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from surge.masking import mask_credentials
from surge.ratelimit.algorithms import RateLimitDecision, RateLimitPolicy

LOCAL_URLS = ("local", "memory://")
LocalHit = Callable[[str, int, float], RateLimitDecision]


class Store(ABC):
    """Shared rate limit state. `now` is the caller's clock; a shared store may ignore it
    and use its own (Redis uses server time, so gateways with skewed clocks agree)."""

    url: str = ""
    # True when `hit_sync` answers without I/O (the gateway then never awaits the store)
    is_local: bool = False

    @abstractmethod
    async def hit(
        self, namespace: str, key: str, policy: RateLimitPolicy, cost: int, now: float
    ) -> RateLimitDecision:
        """Decide and, when allowed and cost > 0, consume; atomically over all limits.
        Raises `surge.errors.StoreError` when the store cannot answer."""

    @abstractmethod
    async def reset(self, namespace: str, key: str) -> None:
        """Forget a key's state: its next request starts with full quota."""

    async def close(self) -> None:  # noqa: B027 -- most stores hold nothing to release
        """Release connections."""


class LocalStore(Store):
    """In-process state: one dict per namespace (plan). Stale entries are swept whenever a
    table has doubled in size since the last sweep, so memory follows the live keys."""

    is_local = True

    def __init__(self, url: str = "local") -> None:
        self.url = url
        self._tables: dict[str, dict[str, Any]] = {}
        self._bound: dict[tuple[str, RateLimitPolicy], LocalHit] = {}

    def bind(self, namespace: str, policy: RateLimitPolicy) -> LocalHit:
        """A synchronous `hit(key, cost, now) -> RateLimitDecision` for one namespace and
        policy: the gateway data path calls it directly, with no lookups beyond the key's own
        state."""
        bound = self._bound.get((namespace, policy))
        if bound is not None:
            return bound
        table = self.table(namespace, policy)
        get, decide = table.get, policy.decide
        sweep_at = max(1024, 2 * len(table))

        def hit(key: str, cost: int, now: float) -> RateLimitDecision:
            nonlocal sweep_at
            decision, new_state = decide(get(key), now, cost)
            if new_state is not None:
                table[key] = new_state
                if len(table) > sweep_at:
                    sweep_at = _sweep(table, policy, now)
            return decision

        self._bound[(namespace, policy)] = hit
        return hit

    def table(self, namespace: str, policy: RateLimitPolicy) -> dict[str, Any]:
        """The states of one namespace under a policy, by key. A caller that writes to it
        directly (the limiter's `gate`) must only overwrite keys that are already present:
        new keys go through `bind`'s hit, which keeps the table swept."""
        # one table per plan and algorithm: states of different algorithms never mix
        return self._tables.setdefault(f"{namespace}/{policy.algorithm}", {})

    def hit_sync(self, namespace: str, key: str, policy: RateLimitPolicy, cost: int,
                 now: float) -> RateLimitDecision:
        """The synchronous form of `hit`, for callback-based callers."""
        return self.bind(namespace, policy)(key, cost, now)

    async def hit(
        self, namespace: str, key: str, policy: RateLimitPolicy, cost: int, now: float
    ) -> RateLimitDecision:
        return self.hit_sync(namespace, key, policy, cost, now)

    async def reset(self, namespace: str, key: str) -> None:
        for name, table in self._tables.items():
            if name.rpartition("/")[0] == namespace:
                table.pop(key, None)

    def __len__(self) -> int:
        return sum(len(t) for t in self._tables.values())


def _sweep(table: dict[str, Any], policy: RateLimitPolicy, now: float) -> int:
    """Drop the entries that are back to 'never seen'; return the size for the next sweep.
    Sweeping when the table has doubled keeps the cost amortised O(1) per hit."""
    stale = [key for key, state in table.items() if policy.expires_at(state) <= now]
    for key in stale:
        del table[key]
    return max(1024, 2 * len(table))


def open_store(url: str = "local", *, timeout: float = 0.25) -> Store:
    """The store for a URL: `local`, `memory://` or `sqlite:///...` (counted in-process: a
    file is no place for per-request counters), `redis://host:port/db` (or `rediss://`).
    `timeout` bounds every call to a remote store, in seconds."""
    if url in LOCAL_URLS or url.startswith("sqlite:///"):
        return LocalStore(url)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from surge.ratelimit.redis_store import RedisStore

        return RedisStore(url, timeout=timeout)
    raise ValueError(f"unknown rate limit store {mask_credentials(url)!r} (expected local, "
                     "memory:// or redis://)")
