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
import operator
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from prometheus_client.core import CounterMetricFamily, Metric

from surge.admin.http import Request, Response, json_response
from surge.errors import ClientError, NotFound, Unauthorized
from surge.gateway.policy import Answer, Identity, RoutePolicy, Verdict, claimed
from surge.observe.problem import RATE_LIMITED, UNAUTHORIZED
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

_NONE: dict[str, str] = {}
_NO_HEADERS: Callable[[str], str | None] = _NONE.get
_NAME = operator.itemgetter(0)
PEER_CACHE: Final = 65536  # peer addresses whose identity is kept; past it the cache starts over
PLAIN_NAMES: Final = 512  # header names learnt as irrelevant to identity; past it none are added


class RateLimitPolicy(RoutePolicy):
    """`rate_limit: true | {plan: NAME} | {cost: N}` on one route.

    The common request carries no API key and counts by its peer address. It is recognised by
    its header names alone (all in `plain`: exact-case names seen before that identification
    never reads; checked in C), its identity comes from a per-address cache, and a key with
    its whole quota takes the limiter gate's shortcut inline: one float compared and stored,
    prebuilt header lines. Everything else goes through `identify` and the gate's `decide`,
    or the remote store.

    A caller an earlier policy identified (`exchange.identity`) is counted as its key on its
    plan. An API key this policy finds becomes the exchange's identity. `Authorization` is
    read for a `Bearer` API key only when no earlier policy of the route claims it (a JWT is
    not an API key)."""

    __slots__ = ("limiter", "identifier", "wanted", "trusts_proxies", "by_peer", "plain",
                 "plan", "cost", "gates", "limited", "table", "step", "lines", "counts")

    def __init__(self, limiting: RateLimiting, plan: str | None = None, cost: int = 1,
                 claimed: frozenset[bytes] = frozenset()) -> None:
        self.limiter = limiter = limiting.limiter
        self.identifier = identifier = limiting.identifier
        # the only request headers identification may read (lower-case, as bytes)
        self.wanted = {b"authorization", b"x-api-key"} - claimed
        if identifier.header is not None:
            self.wanted.add(identifier.header.encode("latin-1"))
        self.trusts_proxies = bool(identifier.trusted.networks)
        # when a keyless request counts by its peer address alone, its identity is cached
        by_peer = identifier.header is None and not self.trusts_proxies
        self.by_peer: dict[bytes, str] = {}
        self.plain: set[bytes] | None = set() if by_peer else None
        self.plan = limiter.plan(plan).name  # an unknown plan fails here, not per request
        self.cost = cost
        self.gates = ({name: limiter.gate(name, cost) for name in limiter.plans}
                      if limiter.is_local else {})
        self.limited = {name: Answer(RATE_LIMITED, f"rate limit of plan '{name}' exceeded")
                        for name in limiter.plans}
        gate = self.gates.get(self.plan)  # the route plan's shortcut, when it has one
        self.table = gate.table if gate is not None else None
        self.step, self.lines = (gate.step, gate.lines) if gate is not None else (0.0, b"")
        self.counts = gate.plan if gate is not None else None

    def before(self, exchange: Exchange) -> Verdict | Awaitable[Verdict]:
        known = exchange.identity
        if known is not None:
            return self.decided(exchange, known.key, self.plan_of(known.plan))
        plain = self.plain
        if plain is None or not plain.issuperset(map(_NAME, exchange.headers)):
            return self.identified(exchange)
        ip = exchange.client.ip
        identity = self.by_peer.get(ip) or self.peer_identity(ip)
        table = self.table
        if table is not None:
            now = exchange.started  # the gateway's clock, time.monotonic, is the limiter's
            state = table.get(identity)
            if state.__class__ is float and state < now:  # Gate's shortcut: a full quota
                table[identity] = now + self.step
                self.counts.allowed += 1  # type: ignore[union-attr]  # set with table
                exchange.extra_headers += self.lines
                return None
        return self.decided(exchange, identity, self.plan)

    def identified(self, exchange: Exchange) -> Verdict | Awaitable[Verdict]:
        try:
            identity, plan = self.identify(exchange)
        except Unauthorized as error:
            return Answer(UNAUTHORIZED, str(error))
        return self.decided(exchange, identity, plan)

    def decided(self, exchange: Exchange, identity: str,
                plan: str) -> Verdict | Awaitable[Verdict]:
        gate = self.gates.get(plan)
        if gate is None:
            return self.remote(exchange, identity, plan)
        allowed, lines = gate.decide(identity, exchange.started)
        exchange.extra_headers += lines
        return None if allowed else self.limited[plan]

    def identify(self, exchange: Exchange) -> tuple[str, str]:
        """(identity, plan) from the headers identification reads; header names found not to
        matter are learnt into `plain`. Raises Unauthorized for a bad or revoked key."""
        found: dict[str, str] = {}
        wanted, plain = self.wanted, self.plain
        for name, value in exchange.headers:
            lname = name.lower()
            if lname in wanted:
                found[lname.decode("latin-1")] = value.decode("latin-1")
            elif plain is not None and len(plain) < PLAIN_NAMES:
                plain.add(name)
        if self.trusts_proxies and exchange.xff:
            found["x-forwarded-for"] = exchange.xff.decode("latin-1")
        key = self.identifier.key(found.get)
        if key is None:
            return self.identifier.anonymous(found.get, exchange.client.ip.decode()), self.plan
        plan = self.plan_of(key.plan)
        exchange.identity = Identity("key:" + key.id, key.name, plan)
        return exchange.identity.key, plan

    def plan_of(self, plan: str | None) -> str:
        """The caller's plan, or the route's when it has none or one that left the config."""
        return plan if plan is not None and plan in self.limited else self.plan

    def peer_identity(self, ip: bytes) -> str:
        by_peer = self.by_peer
        if len(by_peer) >= PEER_CACHE:
            by_peer.clear()
        identity = by_peer[ip] = self.identifier.identify(_NO_HEADERS, ip.decode())[0]
        return identity

    async def remote(self, exchange: Exchange, identity: str, plan: str) -> Verdict:
        decision = await self.limiter.hit(identity, plan, self.cost)
        exchange.extra_headers += self.limiter.headers_raw(decision, plan)
        return None if decision.allowed else self.limited[plan]


class RateLimiting:
    """The limiter, the API key registry and the identifier of one gateway process."""

    def __init__(self, config: Config, base: Path) -> None:
        self.signature = signature(config, base)
        section, state, data_dir = config.rate_limits, config.state, _data_dir(config, base)
        self.limiter = Limiter.from_config(section, state)
        self.keys = open_key_store(state, data_dir)
        self.registry = KeyRegistry(self.keys).start()
        self.identifier = Identifier(self.limiter.settings, self.registry)

    def policy(self, route: Any, earlier: tuple[RoutePolicy, ...]) -> RoutePolicy | None:
        """The `rate_limit` stage of `route` (a `routes[*]` spec), after `earlier` stages."""
        choice = route.rate_limit
        if choice is False:
            return None
        if choice is True:
            return RateLimitPolicy(self, claimed=claimed(earlier))
        return RateLimitPolicy(self, choice.plan, choice.cost, claimed(earlier))

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
        raw, info = await self._blocking(limiting.registry.create, body["name"], body["plan"])
        return json_response({"key": raw, **_view(info)}, 201,
                             [("Location", f"/api/keys/{info.id}")])

    async def revoke_key(self, request: Request) -> Response:
        limiting = self.limiting()
        info = await self._blocking(limiting.registry.revoke, request.params["id"])
        return json_response(_view(info))

    async def set_plan(self, request: Request) -> Response:
        limiting = self.limiting()
        plan = _fields(request, "plan")["plan"]
        self._check_plan(limiting, plan)
        info = await self._blocking(limiting.registry.set_plan, request.params["id"], plan)
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
