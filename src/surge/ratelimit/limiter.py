"""The `Limiter`: the one facade the gateway, the ASGI middleware and the decorator use. It
turns plans into policies, asks the store, applies dry-run and `on_store_error`, counts every
outcome per plan, and renders the IETF RateLimit headers (draft-ietf-httpapi-ratelimit-headers:
`RateLimit-Policy: "free";q=10;w=1` and `RateLimit: "free";r=3;t=1`) plus `Retry-After`.

`hit_local` is the synchronous form for an in-process store (no coroutine, no await), and
`gate` the gateway's: one call that decides, counts and returns the header lines.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple, NoReturn

from surge.errors import ConfigError, StoreError
from surge.ratelimit.algorithms import RateLimitDecision, RateLimitPolicy, make_policy
from surge.ratelimit.settings import RateLimitSettings, unknown_plan
from surge.ratelimit.store import LocalHit, LocalStore, Store, open_store

log = logging.getLogger("surge.ratelimit")

_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


class Plan:
    """One plan at run time: its policy, header text and outcome counters (exported by the
    gateway as per-plan metrics)."""

    __slots__ = ("name", "policy", "local", "names", "policy_header", "rate_prefix",
                 "raw_prefix", "allowed", "rejected", "dry_run_rejected")

    def __init__(self, name: str, policy: RateLimitPolicy, local: LocalHit) -> None:
        self.name = name
        self.policy = policy
        self.local = local  # the store's bound synchronous hit (raises if it is remote)
        rates = policy.rates
        # one quota policy per limit; a lone limit is named after the plan itself
        self.names = [name] if len(rates) == 1 else [f"{name}-{_window(r.period)}" for r in rates]
        self.policy_header = ", ".join(
            f'"{n}";q={r.limit};w={math.ceil(r.period)}'
            for n, r in zip(self.names, rates, strict=True)
        ).encode()
        self.rate_prefix = [b'"%s";r=' % n.encode() for n in self.names]  # RateLimit, per limit
        self.raw_prefix = [b"RateLimit-Policy: %s\r\nRateLimit: %s" % (self.policy_header, r)
                           for r in self.rate_prefix]
        self.allowed = self.rejected = self.dry_run_rejected = 0

    def counters(self) -> dict[str, int]:
        return {"allowed": self.allowed, "rejected": self.rejected,
                "dry_run_rejected": self.dry_run_rejected}

    def render(self, decision: RateLimitDecision) -> bytes:
        """The header lines of `Limiter.headers_raw` for a decision on this plan."""
        reset = decision.reset_after
        raw = self.raw_prefix[decision.tightest] + b"%d;t=%d\r\n" % (
            decision.remaining, math.ceil(reset) if reset < math.inf else 0
        )
        if decision.allowed:
            return raw
        return raw + b"Retry-After: %d\r\n" % retry_after_seconds(decision, self.policy)


class Gate(NamedTuple):
    """The gateway's path on the in-process store, for one plan and cost.

    `decide(identity, now)` decides, counts and returns (allowed, the header lines to add to
    the response); `now` is on the limiter's clock. When `table` is not None the policy has a
    shortcut (see `RateLimitPolicy.fresh`) that a caller may take inline instead: a key whose
    `table[identity]` is a float below `now` has its whole quota; set it to `now + step`, add
    1 to `plan.allowed` and answer allowed with `lines`. Anything else goes to `decide`."""

    decide: Callable[[str, float], tuple[bool, bytes]]
    plan: Plan
    table: dict[str, Any] | None
    step: float
    lines: bytes


class Limiter:
    """Decides whether `identity` may make a request of `cost` on `plan`."""

    def __init__(
        self,
        settings: RateLimitSettings | None = None,
        store: Store | str = "local",
        *,
        clock: Callable[[], float] = time.monotonic,
        log_interval: float = 10.0,
        store_timeout: float = 0.25,
    ) -> None:
        self.settings = settings or RateLimitSettings()
        self.store = open_store(store, timeout=store_timeout) if isinstance(store, str) else store
        self.clock = clock
        self.dry_run = self.settings.dry_run
        self.default_plan = self.settings.default_plan
        local = self.store if isinstance(self.store, LocalStore) else None
        self.plans = {}
        for name, rates in self.settings.plans.items():
            policy = make_policy(self.settings.algorithm, rates, **self._options())
            bound = local.bind(name, policy) if local is not None else self._not_local
            self.plans[name] = Plan(name, policy, bound)
        self.store_errors = 0  # calls the store could not answer; exported as a counter
        self._log_interval = log_interval
        self._last_logged = -math.inf
        self._deny_on_error = self.settings.on_store_error == "deny"

    @classmethod
    def from_config(cls, section: Any, state: str = "local", **kwargs: Any) -> Limiter:
        """From the `rate_limits` section and the `state` URL of surge.yaml."""
        return cls(RateLimitSettings.from_config(section), state, **kwargs)

    @property
    def is_local(self) -> bool:
        """True when `hit_local` can answer (the store is in-process)."""
        return self.store.is_local

    def plan(self, name: str | None = None) -> Plan:
        try:
            return self.plans[name or self.default_plan]
        except KeyError:
            raise ConfigError([unknown_plan(str(name), self.plans)]) from None

    def hit_local(
        self, identity: str, plan: str | None = None, cost: int = 1, now: float | None = None
    ) -> RateLimitDecision:
        """Decide synchronously on the in-process store (raises TypeError on a remote one)."""
        p = self.plans.get(plan or self.default_plan) or self.plan(plan)
        if cost < 0:
            raise ValueError(f"cost must be >= 0, got {cost}")
        return self._counted(p, identity, p.local(identity, cost,
                                                  self.clock() if now is None else now))

    def gate(self, plan: str | None = None, cost: int = 1) -> Gate:
        """The gateway's path on the in-process store for `plan` and `cost` (see `Gate`).
        A key with its whole quota (most keys, most of the time) is answered from header
        lines prebuilt here: nothing is formatted for it."""
        p = self.plan(plan)
        if cost < 0:
            raise ValueError(f"cost must be >= 0, got {cost}")
        store = self.store
        if not isinstance(store, LocalStore):
            self._not_local(p.name, cost, 0.0)
        hit, counted, render, policy = p.local, self._counted, p.render, p.policy
        fresh = policy.fresh if cost == 1 else None
        lines = render(fresh) if fresh is not None else b""
        prebuilt = True, lines

        def decide(identity: str, now: float) -> tuple[bool, bytes]:
            decision = hit(identity, cost, now)
            if decision is fresh:
                p.allowed += 1
                return prebuilt
            decision = counted(p, identity, decision)
            return decision[0], render(decision)

        table = store.table(p.name, policy) if fresh is not None else None
        return Gate(decide, p, table, policy.fresh_step, lines)

    async def hit(
        self, identity: str, plan: str | None = None, cost: int = 1, now: float | None = None
    ) -> RateLimitDecision:
        """Decide on any store. A store that fails follows `on_store_error`."""
        p = self.plans.get(plan or self.default_plan) or self.plan(plan)
        if cost < 0:
            raise ValueError(f"cost must be >= 0, got {cost}")
        try:
            decision = await self.store.hit(p.name, identity, p.policy, cost,
                                            self.clock() if now is None else now)
        except StoreError as exc:
            return self._store_failed(exc)
        return self._counted(p, identity, decision) if cost else decision

    async def peek(self, identity: str, plan: str | None = None) -> RateLimitDecision:
        """The decision a request of cost 1 would get, consuming nothing."""
        p = self.plan(plan)
        decision = await self.store.hit(p.name, identity, p.policy, 0, self.clock())
        return decision if decision.remaining > 0 else decision._replace(allowed=False)

    async def state(self, identity: str, plan: str | None = None) -> dict[str, Any]:
        """What `GET /api/ratelimits/{key}` shows: the plan's limits and the key's quota."""
        p = self.plan(plan)
        d = await self.peek(identity, p.name)
        return {
            "key": identity,
            "plan": p.name,
            "algorithm": p.policy.algorithm,
            "limits": [{"policy": n, "quota": r.limit, "window": r.period}
                       for n, r in zip(p.names, p.policy.rates, strict=True)],
            "tightest": p.names[d.tightest],
            "remaining": d.remaining,
            "reset_after": round(d.reset_after, 3),
            "limited": not d.allowed,
        }

    async def reset(self, identity: str, plan: str | None = None) -> None:
        await self.store.reset(self.plan(plan).name, identity)

    def headers(self, decision: RateLimitDecision,
                plan: str | None = None) -> list[tuple[bytes, bytes]]:
        """`RateLimit-Policy` and `RateLimit` for any response, `Retry-After` on a rejection."""
        p = self.plans.get(plan or self.default_plan) or self.plan(plan)
        reset = decision.reset_after
        rate_limit = p.rate_prefix[decision.tightest] + b"%d;t=%d" % (
            decision.remaining, math.ceil(reset) if reset < math.inf else 0
        )
        headers = [(b"RateLimit-Policy", p.policy_header), (b"RateLimit", rate_limit)]
        if not decision.allowed:
            headers.append((b"Retry-After", b"%d" % retry_after_seconds(decision, p.policy)))
        return headers

    def headers_raw(self, decision: RateLimitDecision, plan: str | None = None) -> bytes:
        """The same fields as `headers`, as HTTP/1.1 header lines (each ending in CRLF) ready
        to splice into a response head: the gateway's form, one bytes operation."""
        return (self.plans.get(plan or self.default_plan) or self.plan(plan)).render(decision)

    def counters(self) -> dict[str, Any]:
        """Per-plan outcomes and store errors, for the metrics exporter."""
        return {"plans": {name: p.counters() for name, p in self.plans.items()},
                "store_errors": self.store_errors}

    async def close(self) -> None:
        await self.store.close()

    def _options(self) -> dict[str, Any]:
        shaping = self.settings.algorithm == "shaping"
        return {"max_delay": self.settings.max_delay} if shaping else {}

    def _not_local(self, identity: str, cost: int, now: float) -> NoReturn:
        raise TypeError(f"store {self.store.url} is not in-process; await hit() instead")

    def _counted(self, p: Plan, identity: str, decision: RateLimitDecision) -> RateLimitDecision:
        """Count a decision that spent quota (or would have) on its plan; dry-run turns a
        rejection into an allowed decision."""
        if decision[0]:
            p.allowed += 1
            return decision
        if self.dry_run:
            return self._dry_run(p, identity, decision)
        p.rejected += 1
        return decision

    def _dry_run(self, p: Plan, identity: str, decision: RateLimitDecision) -> RateLimitDecision:
        p.dry_run_rejected += 1
        log.info("dry-run: would reject %s on plan %s (retry after %.3fs)",
                 identity, p.name, decision.retry_after)
        return decision._replace(allowed=True)

    def _store_failed(self, exc: StoreError) -> RateLimitDecision:
        self.store_errors += 1
        now = time.monotonic()
        if now - self._last_logged >= self._log_interval:
            self._last_logged = now
            log.warning("rate limit store failed (%d errors so far), on_store_error=%s: %s",
                        self.store_errors, self.settings.on_store_error, exc)
        if self._deny_on_error:
            return RateLimitDecision(False, 0, 0.0, 1.0)
        return RateLimitDecision(True, 0, 0.0, 0.0)


def retry_after_seconds(decision: RateLimitDecision, policy: RateLimitPolicy) -> int:
    """Whole seconds for `Retry-After`: at least 1; the longest window when never."""
    if decision.retry_after == math.inf:
        return math.ceil(max(r.period for r in policy.rates))
    return max(1, math.ceil(decision.retry_after))


def _window(period: float) -> str:
    for unit, seconds in _UNITS:
        if period >= seconds and period % seconds == 0:
            return f"{int(period // seconds)}{unit}"
    return f"{period:g}s"

