"""What the data path sees, as one immutable snapshot: the route table and the services.
A new config (reload) or an admin change builds the next snapshot; the gateway swaps it in
with one assignment, so no request sees half a change. Services live on across snapshots
(their pools and health verdicts with them); only their spec and upstream set are reconciled."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from surge.config import Config
from surge.config.models import Route as RouteSpec
from surge.gateway.hedge import P95_FALLBACK, p95
from surge.gateway.policy import RoutePolicy
from surge.observe.metrics import BUCKETS, GatewayStats, RouteStats
from surge.routing import RouteTable, strip
from surge.routing.versions import VersionReader
from surge.upstreams.service import ServiceRuntime

log = logging.getLogger("surge.gateway")


class RouteRuntime:
    """A configured route (`spec`, its validated config model) plus what the gateway keeps
    per route (its counters)."""

    __slots__ = ("spec", "name", "prefix", "host", "methods", "headers", "service",
                 "strip_prefix", "label", "stats", "policies", "timeout", "hedge_delay",
                 "hedge_p95", "version")

    def __init__(self, spec: RouteSpec, stats: GatewayStats,
                 policies: tuple[RoutePolicy, ...] = ()) -> None:
        self.spec = spec
        self.name: str | None = spec.name  # what canaries, SLOs and policies call it
        self.prefix = spec.prefix
        self.host = spec.host
        self.methods = spec.methods
        self.headers = spec.headers
        self.service = spec.service
        self.strip_prefix = spec.strip_prefix
        self.version = spec.version
        self.label = (spec.host or "") + spec.prefix
        self.stats: RouteStats = stats.route(self.label, spec.service)
        self.policies = policies
        self.timeout = spec.timeout
        delay = spec.hedge.delay if spec.hedge is not None else None
        self.hedge_p95 = delay == "p95"
        # None: no hedging. With `delay: p95` the gateway's maintenance keeps it current.
        self.hedge_delay: float | None = P95_FALLBACK if delay == "p95" else delay

    def refresh_hedge_delay(self) -> None:
        if self.hedge_p95:
            self.hedge_delay = p95(self.stats.buckets, BUCKETS)

    def strip(self, path: str) -> str:
        return strip(path, self)


class Routes:
    """The route table (`table.match` returns a `CompiledRoute` whose `.source` is a
    RouteRuntime) and the facts the data path asks before reading a request's host, building
    a header map or reading its version (`versions`: None without a `versioning` section)."""

    __slots__ = ("table", "uses_headers", "uses_host", "versions")

    def __init__(self, routes: list[RouteRuntime], versions: VersionReader | None = None) -> None:
        self.table = RouteTable(routes)
        self.uses_headers = any(r.headers for r in routes)
        self.uses_host = any(r.host for r in routes)
        self.versions = versions


@dataclass(frozen=True)
class Snapshot:
    config: Config
    routes: Routes
    services: dict[str, ServiceRuntime]


def build_snapshot(config: Config, previous: Snapshot | None, stats: GatewayStats,
                   connect_timeout: float, now: float,
                   dynamic: dict[str, dict[str, int | None]] | None = None,
                   policies: Callable[[RouteSpec], tuple[RoutePolicy, ...]] | None = None,
                   ) -> Snapshot:
    """The snapshot for `config`, reusing the services of `previous`. Changes made through the
    admin API survive reloads: `dynamic` maps service -> address -> weight, or None for an
    upstream removed there."""
    old = previous.services if previous is not None else {}
    services: dict[str, ServiceRuntime] = {}
    for name, spec in config.services.items():
        service = old.get(name)
        if service is None:
            service = ServiceRuntime(name, spec, connect_timeout)
        else:
            service.configure(spec)
        wanted = {u.address: u.weight for u in spec.upstreams}
        for address, weight in (dynamic or {}).get(name, {}).items():
            if weight is None:
                wanted.pop(address, None)
            else:
                wanted[address] = weight
        reconcile(service, wanted, now)
        services[name] = service
    for name, service in old.items():
        if name not in services:
            for address in list(service.upstreams):
                service.drain(address)
    v = config.versioning
    routes = Routes([RouteRuntime(r, stats, policies(r) if policies else ())
                     for r in config.routes],
                    VersionReader(v.header, v.query, v.default) if v is not None else None)
    return Snapshot(config, routes, services)


def reconcile(service: ServiceRuntime, wanted: dict[str, int], now: float) -> None:
    """Bring the service's upstreams to `wanted` (address -> weight): add, re-weigh, drain."""
    for address, weight in wanted.items():
        up = service.upstreams.get(address)
        if up is None or up.draining:
            service.add(address, weight, now)
        elif up.weight != weight:
            up.weight = weight
            service.refresh()
    for address, up in list(service.upstreams.items()):
        if address not in wanted and not up.draining:
            log.info("service %s: draining upstream %s", service.name, address)
            service.drain(address)
