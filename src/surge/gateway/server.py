"""The gateway of one process: listeners, the current snapshot, health probers, the sweeper
that enforces deadlines, and the control-plane operations the admin API calls. Lifecycle:
`start` -> serving -> `reload`/admin changes (snapshot swaps) -> `shutdown(drain)`."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path
from typing import Any, Final, Protocol

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from surge.config import Config, load
from surge.errors import ClientError, NotFound
from surge.gateway.client import ClientConnection
from surge.gateway.deprecation import DeprecatedCallers
from surge.gateway.policy import PolicySource, RoutePolicy, chain
from surge.gateway.ratelimit import RateLimitCollector, RateLimiting, in_use, signature
from surge.gateway.snapshot import Snapshot, build_snapshot
from surge.http.headers import DATE
from surge.observe.accesslog import AccessLog
from surge.observe.metrics import GatewayCollector, GatewayStats
from surge.upstreams.prober import Prober
from surge.upstreams.service import ServiceRuntime

log: Final = logging.getLogger("surge.gateway")

SWEEP_INTERVAL: Final = 0.1   # deadline resolution
MAINTENANCE_EVERY: Final = 10  # sweeps between pool and drain housekeeping (about a second)


class ReloadFollower(Protocol):
    """A part of the process that follows the config on reload (the supervisor): `check` may
    refuse the new config before anything changes, `reconcile` acts once the gateway took it."""

    def check(self, config: Config) -> None: ...

    async def reconcile(self, config: Config) -> None: ...


class GatewayServer:
    def __init__(self, config: Config, path: str | Path | None = None, *,
                 reuse_port: bool = False) -> None:
        self.path = Path(path) if path is not None else None
        self.reuse_port = reuse_port
        self.loop = asyncio.get_running_loop()
        # The gateway's clock: monotonic with sub-millisecond resolution (uvloop's loop.time()
        # ticks in whole milliseconds, too coarse for latency figures).
        self.now = time.monotonic
        self.stats = GatewayStats()
        self.connections: set[ClientConnection] = set()
        self.dynamic: dict[str, dict[str, int | None]] = {}
        self.probers: dict[str, Prober] = {}
        self.retired: list[ServiceRuntime] = []
        self.servers: list[asyncio.Server] = []
        self.draining = False
        self.active = 0  # requests in flight, against gateway.max_inflight
        self.access_log: AccessLog | None = None
        self.snapshot: Snapshot = None  # type: ignore[assignment]
        self.sweeper: asyncio.Task[None] | None = None
        self.registry = CollectorRegistry()
        self.registry.register(GatewayCollector(  # type: ignore[arg-type]
            self.stats, lambda: self.snapshot.services.values(), lambda: len(self.connections),
            lambda: self.active))
        # Each stage of the policy chain in use (policy.STAGES) -> what builds its policy for
        # a route; a feature adds its source when the config turns it on.
        self.policy_sources: dict[str, PolicySource] = {}
        self.rate_limiting: RateLimiting | None = None
        self.rate_limit_stats = RateLimitCollector(lambda: self.rate_limiting)
        self.registry.register(self.rate_limit_stats)  # type: ignore[arg-type]
        self.deprecated_callers = DeprecatedCallers()
        self.registry.register(self.deprecated_callers)  # type: ignore[arg-type]
        self.followers: list[ReloadFollower] = []
        self.apply(config)

    # -- configuration ---------------------------------------------------------------------------

    def apply(self, config: Config) -> None:
        """Swap in the snapshot for `config` (first start, reload or admin change)."""
        g = config.gateway
        self.config = config
        self.max_header_bytes = g.max_header_bytes
        self.max_body_bytes = g.max_body_bytes
        self.client_header_timeout = g.timeouts.client_header
        self.upstream_timeout = g.timeouts.upstream
        self.client_body_timeout = g.timeouts.client_body
        self.upstream_body_timeout = g.timeouts.upstream_body
        self.idle_timeout = g.timeouts.idle
        self.max_inflight = g.max_inflight
        self.keep_encoded_slash = g.paths.encoded_slash == "keep"
        self.merge_slashes = g.paths.merge_slashes
        self.forward_original = g.paths.forward == "original"
        self.set_rate_limiting(config)
        if any(route.deprecated is not None for route in config.routes):
            self.policy_sources["deprecation"] = self.deprecated_callers.policy
        else:
            self.policy_sources.pop("deprecation", None)
        # Admin changes of a service that left the config would come back with it.
        self.dynamic = {name: d for name, d in self.dynamic.items() if name in config.services}
        self.rebuild()
        self.set_access_log(g.access_log)

    def rebuild(self) -> None:
        previous = self.snapshot
        before = {id(u) for s in (previous.services.values() if previous else ())
                  for u in s.upstreams.values()}
        self.snapshot = build_snapshot(self.config, previous, self.stats,
                                       self.config.gateway.timeouts.connect, self.now(),
                                       self.dynamic, self.policies)
        if previous is not None:
            self.retired += [s for n, s in previous.services.items()
                             if n not in self.snapshot.services]
        for name, service in self.snapshot.services.items():
            prober = self.probers.get(name)
            if prober is None:
                prober = self.probers[name] = Prober(service)
                if self.servers:
                    prober.start()
            for up in service.upstreams.values():
                if id(up) not in before:
                    prober.check_soon(up) if self.servers else None
        for name in list(self.probers):
            if name not in self.snapshot.services:
                self.probers.pop(name).stop()

    def policies(self, route: Any) -> tuple[RoutePolicy, ...]:
        return chain(route, self.policy_sources)

    def set_rate_limiting(self, config: Config) -> None:
        """Build the limiter, key registry and identifier once; a reload keeps them (and their
        counts) while the rate_limits section, state and data_dir stay the same."""
        base = self.path.parent if self.path is not None else Path.cwd()
        wanted = in_use(config)
        current = self.rate_limiting
        if current is not None and wanted and current.signature == signature(config, base):
            return
        self.rate_limiting = RateLimiting(config, base) if wanted else None
        if self.rate_limiting is not None:
            self.policy_sources["rate_limit"] = self.rate_limiting.policy
        else:
            self.policy_sources.pop("rate_limit", None)
        if current is not None:
            self.rate_limit_stats.retire(current)
            self.loop.create_task(current.close())

    def set_access_log(self, target: str) -> None:
        current = self.access_log
        if current is not None:
            current.close()
        self.access_log = None if target == "off" else AccessLog(target)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Check every upstream once (each check bounded by its `health.timeout`), then listen:
        a gateway that accepted first would answer 503 until its checks came back, which a
        gateway process replaced under `workers: N` or a rolled gateway pod must not do."""
        await asyncio.gather(*(prober.round() for prober in self.probers.values()))
        for address in self.config.gateway.listen:
            host, _, port = address.rpartition(":")
            server = await self.loop.create_server(
                lambda: ClientConnection(self), host.strip("[]"), int(port),
                reuse_port=self.reuse_port or None, backlog=2048, family=socket.AF_UNSPEC)
            self.servers.append(server)
        for prober in self.probers.values():
            prober.start()
        self.sweeper = self.loop.create_task(self.sweep())

    async def shutdown(self, drain: float | None = None) -> None:
        """Stop accepting, let in-flight requests finish for up to `drain` seconds, close."""
        drain = self.config.gateway.drain if drain is None else drain
        self.draining = True
        for server in self.servers:
            server.close()
        for conn in list(self.connections):
            conn.drain()
        deadline = self.now() + drain
        while self.connections and self.now() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.abort()
        for prober in self.probers.values():
            prober.stop()
        if self.sweeper is not None:
            self.sweeper.cancel()
        for service in self.snapshot.services.values():
            for up in service.upstreams.values():
                up.pool.close()
        if self.access_log is not None:
            self.access_log.close()
        if self.rate_limiting is not None:
            await self.rate_limiting.close()

    async def sweep(self) -> None:
        tick = 0
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            now = self.now()
            DATE.tick(time.time())  # the Date line forwarded responses without one get
            for conn in list(self.connections):
                try:
                    self.enforce(conn, now)
                except Exception:  # one connection's bug must not stop every deadline
                    log.exception("deadline handling failed; closing that connection")
                    conn.abort()
            if self.access_log is not None:
                self.access_log.flush()
            self.sweep_pools(now)
            tick += 1
            if tick % MAINTENANCE_EVERY == 0:
                self.maintain(now)

    @staticmethod
    def enforce(conn: ClientConnection, now: float) -> None:
        if conn.deadline_kind and conn.deadline <= now:
            conn.deadline_passed()
        ex = conn.current
        if ex is None:
            return
        if ex.deadline and ex.deadline <= now:
            ex.timeout()
        else:
            ex.check_progress(now)

    def sweep_pools(self, now: float) -> None:
        """Close idle pooled connections past their time: the gateway's `timeouts.idle`, or
        sooner where an upstream is known to close them (every tick, so that one is closed
        within a tenth of a second of its limit, well inside the safety margin)."""
        idle = self.idle_timeout
        for service in [*self.snapshot.services.values(), *self.retired]:
            for up in service.upstreams.values():
                up.pool.sweep(now, idle)

    def maintain(self, now: float) -> None:
        """Forget drained upstreams; keep retry budgets and `hedge: {delay: p95}` routes'
        delays current."""
        for route in self.snapshot.routes.table.routes:
            route.source.refresh_hedge_delay()
        for service in [*self.snapshot.services.values(), *self.retired]:
            service.budget.tick(now, service.requests)
            service.decay_stale_latency()
            for up in service.drained():
                log.info("service %s: upstream %s drained and removed", service.name,
                         up.address)
                service.remove(up)
        self.retired = [s for s in self.retired if s.upstreams]

    # -- control plane (the admin API calls these) -----------------------------------------------

    def services_view(self) -> list[dict[str, Any]]:
        return [s.view() for s in self.snapshot.services.values()]

    async def add_upstream(self, service: str, address: str, weight: int) -> dict[str, Any]:
        runtime = self._service(service)
        current = runtime.upstreams.get(address)
        if current is not None and not current.draining:
            raise ClientError(f"service '{service}' already has upstream {address}")
        self.dynamic.setdefault(service, {})[address] = weight
        self.rebuild()
        up = runtime.upstreams[address]
        return {"service": service, "address": address, "weight": weight,
                "healthy": up.healthy}

    async def remove_upstream(self, service: str, address: str) -> None:
        runtime = self._service(service)
        up = runtime.upstreams.get(address)
        if up is None or up.draining:
            raise NotFound(f"service '{service}' has no upstream {address}")
        self.dynamic.setdefault(service, {})[address] = None
        runtime.drain(address)

    def follow_admin_changes(self, changes: dict[str, dict[str, int | None]]) -> None:
        """Take upstreams added (weight) or drained (None) elsewhere, as if through this
        admin API: a gateway process of `workers: N` starts with its master's."""
        for service, addresses in changes.items():
            if service in self.config.services:
                self.dynamic.setdefault(service, {}).update(addresses)
        self.rebuild()

    async def reload(self) -> dict[str, Any]:
        if self.path is None:
            raise ClientError("this gateway was not started from a file")
        config = await self.loop.run_in_executor(None, load, self.path)
        for follower in self.followers:
            follower.check(config)
        self.apply(config)
        for follower in self.followers:
            await follower.reconcile(config)
        log.info("reloaded %s", self.path)
        return {"status": "reloaded", "services": len(config.services),
                "routes": len(config.routes)}

    def metrics_text(self) -> tuple[bytes, str]:
        """The gateway's families, then the process-wide ones (process CPU and memory, Python
        GC, and the job queue gauges when a `jobs` section is configured)."""
        return generate_latest(self.registry) + generate_latest(REGISTRY), CONTENT_TYPE_LATEST

    def _service(self, name: str) -> ServiceRuntime:
        runtime = self.snapshot.services.get(name)
        if runtime is None:
            raise NotFound(f"no service named '{name}'")
        return runtime
