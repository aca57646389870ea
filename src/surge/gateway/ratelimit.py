"""Rate limiting in the gateway: `RateLimitPolicy` (the route policy that identifies a request,
decides on the limiter and answers 401 or 429), `RateLimiting` (the limiter, key registry and
identifier of one gateway process, built from surge.yaml and kept across reloads), its
Prometheus collector, and the admin routes (`/api/ratelimits/{key}`, `/api/keys`).

The counting itself lives in `surge.ratelimit`; nothing here decides a limit. With an
in-process store the policy answers synchronously (no coroutine on the request path); with a
remote one it hands the exchange an awaitable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, Metric

from surge.admin.http import Request, Response, json_response
from surge.errors import ClientError, NotFound, RateLimited, Unauthorized
from surge.gateway.policy import Answer, RoutePolicy, Verdict
from surge.ratelimit.algorithms import Decision
from surge.ratelimit.identity import Identifier
from surge.ratelimit.keys import KeyInfo, open_key_store
from surge.ratelimit.limiter import Limiter
from surge.ratelimit.registry import KeyRegistry
from surge.ratelimit.settings import unknown_plan

if TYPE_CHECKING:
    from surge.admin.router import Router
    from surge.config import Config
    from surge.gateway.exchange import Exchange

log = logging.getLogger("surge.gateway")

_UNAUTHORIZED = Unauthorized.status, Unauthorized.type
_LIMITED = RateLimited.status, RateLimited.type
_NONE: dict[str, str] = {}
_NO_HEADERS: Callable[[str], str | None] = _NONE.get
PEER_CACHE = 65536  # peer addresses whose identity is kept; past it the cache starts over


class RateLimitPolicy(RoutePolicy):
    """`rate_limit: true | {plan: NAME} | {cost: N}` on one route."""

    __slots__ = ("limiter", "identifier", "local", "wanted", "trusts_proxies", "by_peer",
                 "plan", "cost", "detail")

    def __init__(self, limiting: RateLimiting, plan: str | None = None, cost: int = 1) -> None:
        self.limiter = limiter = limiting.limiter
        self.identifier = identifier = limiting.identifier
        self.local = limiter.is_local
        # the only request headers identification may read (lower-case, as bytes)
        self.wanted = {b"authorization", b"x-api-key"}
        if identifier.header is not None:
            self.wanted.add(identifier.header.encode("latin-1"))
        self.trusts_proxies = bool(identifier.trusted.networks)
        # when a keyless request counts by its peer address alone, its identity is cached
        self.by_peer: dict[bytes, str] | None = (
            {} if identifier.header is None and not self.trusts_proxies else None)
        self.plan = limiter.plan(plan).name  # an unknown plan fails here, not per request
        self.cost = cost
        self.detail: dict[str, str] = {
            name: f"rate limit of plan '{name}' exceeded" for name in limiter.plans}

    def before(self, exchange: Exchange) -> Verdict | Awaitable[Verdict]:
        found: dict[str, str] | None = None
        wanted = self.wanted
        for name, value in exchange.headers:
            lname = name.lower()
            if lname in wanted:
                if found is None:
                    found = {}
                found[lname.decode("latin-1")] = value.decode("latin-1")
        by_peer = self.by_peer
        if found is None and by_peer is not None:
            ip = exchange.client.ip
            identity = by_peer.get(ip) or self.peer_identity(ip)
            plan = self.plan
        else:
            found = found or {}
            if self.trusts_proxies and exchange.xff:
                found["x-forwarded-for"] = exchange.xff.decode("latin-1")
            try:
                identity, key_plan = self.identifier.identify(found.get,
                                                              exchange.client.ip.decode())
            except Unauthorized as error:
                return Answer(*_UNAUTHORIZED, str(error), "unauthorized")
            # no key, or the key's plan left the config: the route's plan
            plan = key_plan if key_plan in self.detail else self.plan
        if self.local:
            return self.settle(exchange, self.limiter.hit_local(identity, plan, self.cost), plan)
        return self.remote(exchange, identity, plan)

    def peer_identity(self, ip: bytes) -> str:
        by_peer = self.by_peer
        assert by_peer is not None
        if len(by_peer) >= PEER_CACHE:
            by_peer.clear()
        identity = by_peer[ip] = self.identifier.identify(_NO_HEADERS, ip.decode())[0]
        return identity

    async def remote(self, exchange: Exchange, identity: str, plan: str) -> Verdict:
        return self.settle(exchange, await self.limiter.hit(identity, plan, self.cost), plan)

    def settle(self, exchange: Exchange, decision: Decision, plan: str) -> Verdict:
        """Headers on the response either way; a 429 (with Retry-After) when not allowed."""
        exchange.extra_headers += self.limiter.headers_raw(decision, plan)
        if decision.allowed:
            return None
        return Answer(*_LIMITED, self.detail[plan], "rate_limited")


class RateLimiting:
    """The limiter, the API key registry and the identifier of one gateway process."""

    def __init__(self, config: Config, base: Path) -> None:
        self.signature = signature(config, base)
        section, state, data_dir = config.rate_limits, config.state, _data_dir(config, base)
        self.limiter = Limiter.from_config(section, state)
        self.keys = open_key_store(state, data_dir)
        self.registry = KeyRegistry(self.keys).start()
        self.identifier = Identifier(self.limiter.settings, self.registry)

    def policies(self, route: Any) -> tuple[RoutePolicy, ...]:
        """The policies `build_snapshot` puts on `route` (a `routes[*]` spec)."""
        choice = route.rate_limit
        if choice is False:
            return ()
        if choice is True:
            return (RateLimitPolicy(self),)
        return (RateLimitPolicy(self, choice.plan, choice.cost),)

    async def close(self) -> None:
        self.registry.stop()
        self.keys.close()
        await self.limiter.close()


def signature(config: Config, base: Path) -> tuple[str, str, str]:
    """What the rate limiting of a config is built from: equal signatures share one instance."""
    return config.rate_limits.model_dump_json(), config.state, _data_dir(config, base)


def in_use(config: Config) -> bool:
    return any(route.rate_limit is not False for route in config.routes)


def _data_dir(config: Config, base: Path) -> str:
    """`data_dir` relative to the config file's folder, as `surge keys` reads it."""
    return str(base / config.data_dir)


class RateLimitCollector:
    """Per-plan outcomes and store errors at scrape time. Counts of a rate limiting replaced
    by a reload are carried over, so the counters never go back."""

    def __init__(self, current: Callable[[], RateLimiting | None]) -> None:
        self.current = current
        self.carried: dict[tuple[str, str], int] = {}
        self.carried_errors = 0

    def retire(self, old: RateLimiting) -> None:
        counters = old.limiter.counters()
        for plan, outcomes in counters["plans"].items():
            for outcome, count in outcomes.items():
                self.carried[plan, outcome] = self.carried.get((plan, outcome), 0) + count
        self.carried_errors += counters["store_errors"]

    def collect(self) -> Iterator[Metric]:
        totals = dict(self.carried)
        errors = self.carried_errors
        limiting = self.current()
        if limiting is None and not totals:
            return  # rate limiting never in use: no families at all
        if limiting is not None:
            counters = limiting.limiter.counters()
            for plan, outcomes in counters["plans"].items():
                for outcome, count in outcomes.items():
                    totals[plan, outcome] = totals.get((plan, outcome), 0) + count
            errors += counters["store_errors"]
        decisions = CounterMetricFamily(
            "surge_ratelimit_decisions", "Rate limit decisions by plan and outcome "
            "(allowed, rejected, dry_run_rejected)", labels=["plan", "outcome"])
        for (plan, outcome), count in sorted(totals.items()):
            decisions.add_metric([plan, outcome], count)
        yield decisions
        yield CounterMetricFamily("surge_ratelimit_store_errors", "Rate limit decisions the "
                                  "shared store could not answer (on_store_error applied)",
                                  value=errors)


# -- admin API -----------------------------------------------------------------------------------


def register_routes(router: Router, current: Callable[[], RateLimiting | None]) -> None:
    """`GET /api/ratelimits/{key}` and the API key operations, on the gateway's admin API."""
    KeyRoutes(current).register(router)


class KeyRoutes:
    def __init__(self, current: Callable[[], RateLimiting | None]) -> None:
        self.current = current

    def register(self, router: Router) -> None:
        router.add("GET", "/api/ratelimits/{key}", self.state)
        router.add("GET", "/api/keys", self.list_keys)
        router.add("POST", "/api/keys", self.create_key)
        router.add("DELETE", "/api/keys/{id}", self.revoke_key)
        router.add("PUT", "/api/keys/{id}/plan", self.set_plan)

    def limiting(self) -> RateLimiting:
        limiting = self.current()
        if limiting is None:
            raise NotFound("rate limiting is off: no route has rate_limit set")
        return limiting

    async def state(self, request: Request) -> Response:
        """A key id (`key_...`) on its plan, or an identity (`ip:1.2.3.4`, `header:v`, or a
        bare address) on `?plan=` or the default plan."""
        limiting = self.limiting()
        ref = request.params["key"]
        plan: str | None = request.query["plan"][0] if request.query.get("plan") else None
        if ref.startswith("key_"):
            info = await self._blocking(limiting.keys.get, ref)
            identity, plan = "key:" + info.id, plan or info.plan
        else:
            identity = ref if ref.startswith(("ip:", "header:", "key:")) else "ip:" + ref
        if plan is not None and plan not in limiting.limiter.plans:
            raise NotFound(f"no plan named {plan!r}")
        return json_response(await limiting.limiter.state(identity, plan))

    async def list_keys(self, request: Request) -> Response:
        keys = await self._blocking(self.limiting().keys.list)
        return json_response({"keys": [_view(info) for info in keys]})

    async def create_key(self, request: Request) -> Response:
        limiting = self.limiting()
        body = _fields(request, "name", "plan")
        self._check_plan(limiting, body["plan"])
        raw, info = await self._blocking(limiting.keys.create, body["name"], body["plan"])
        await self._blocking(limiting.registry.refresh)  # this process sees it at once
        return json_response({"key": raw, **_view(info)}, 201,
                             [("Location", f"/api/keys/{info.id}")])

    async def revoke_key(self, request: Request) -> Response:
        limiting = self.limiting()
        info = await self._blocking(limiting.keys.revoke, request.params["id"])
        await self._blocking(limiting.registry.refresh)
        return json_response(_view(info))

    async def set_plan(self, request: Request) -> Response:
        limiting = self.limiting()
        plan = _fields(request, "plan")["plan"]
        self._check_plan(limiting, plan)
        info = await self._blocking(limiting.keys.set_plan, request.params["id"], plan)
        await self._blocking(limiting.registry.refresh)
        return json_response(_view(info))

    @staticmethod
    def _check_plan(limiting: RateLimiting, plan: str) -> None:
        plans = limiting.limiter.plans
        if plan not in plans:
            raise ClientError(f"plan: {unknown_plan(plan, plans)}")

    @staticmethod
    async def _blocking(fn: Callable[..., Any], *args: Any) -> Any:
        """Key stores are synchronous (SQLite, redis-py): off the event loop. An unknown key
        id is a 404."""
        try:
            return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
        except KeyError as exc:
            raise NotFound(f"no API key {exc.args[0]!r}") from None


def _fields(request: Request, *names: str) -> dict[str, str]:
    body = request.json()
    if not isinstance(body, dict):
        raise ClientError("expected a JSON object")
    for name in names:
        if not isinstance(body.get(name), str) or not body[name]:
            raise ClientError(f"{name}: expected a non-empty string")
    return body


def _view(info: KeyInfo) -> dict[str, Any]:
    """What the admin API shows of a key: never its hash."""
    view = info.to_dict()
    del view["key_hash"]
    view["active"] = info.active
    return view
