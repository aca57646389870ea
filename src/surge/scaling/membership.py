"""How supervised replicas join and leave their service, and what the supervisor and the
autoscaler read back from the gateway: each upstream's health verdict, draining flag and
in-flight count, and the route counters that give a service's rate and p95.

`GatewayMembership` is the gateway of this process (`workers: 1`); `NoGateway` serves
supervisors of job workers only; the master of `workers: N` has its own (`master.py`), which
speaks to every gateway process. No lifecycle decisions here: the supervisor makes them."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

from surge.admin.control import ControlPlane
from surge.errors import NotFound
from surge.observe.metrics import GatewayStats

if TYPE_CHECKING:  # the gateway is handed in; scaling does not import the data path
    from surge.gateway.server import GatewayServer


@dataclass(frozen=True, slots=True)
class UpstreamState:
    healthy: bool
    draining: bool
    inflight: int


class Membership(ABC):
    """Replicas join and leave through `control`, what the admin API drives (the GatewayServer,
    or the master of `workers: N`), with the same `add_upstream` and `remove_upstream`; None
    for a supervisor of job workers only, whose replicas join nothing."""

    stats: GatewayStats | None = None  # route counters (ServiceTraffic reads them)

    def __init__(self, control: ControlPlane | None) -> None:
        self.control = control

    async def join(self, service: str, address: str) -> None:
        """Add the replica to its service; the gateway warms it before it gets traffic."""
        if self.control is None:
            raise NotFound(f"no gateway to add '{service}' replicas to")
        await self.control.add_upstream(service, address, 1)

    async def leave(self, service: str, address: str) -> None:
        """No new requests for the replica (it drains); nothing when it is not a member, or
        already leaving."""
        if self.control is not None:
            with contextlib.suppress(NotFound):
                await self.control.remove_upstream(service, address)

    @abstractmethod
    async def upstreams(self, service: str) -> dict[str, UpstreamState]:
        """Every upstream the gateway still holds for `service`, draining ones included (also
        after the service left the config, until they have drained)."""

    async def inflight(self, service: str, address: str) -> int:
        state = (await self.upstreams(service)).get(address)
        return state.inflight if state is not None else 0

    async def healthy(self, service: str, address: str) -> bool:
        state = (await self.upstreams(service)).get(address)
        return state is not None and state.healthy and not state.draining


class GatewayMembership(Membership):
    """The `GatewayServer` running in this process."""

    def __init__(self, gateway: GatewayServer) -> None:
        super().__init__(gateway)
        self.gateway = gateway
        self.stats = gateway.stats

    async def upstreams(self, service: str) -> dict[str, UpstreamState]:
        return upstream_states(self.gateway, service)


class NoGateway(Membership):
    """For a supervisor of job workers only: nothing to join."""

    def __init__(self) -> None:
        super().__init__(None)

    async def upstreams(self, service: str) -> dict[str, UpstreamState]:
        return {}


def upstream_states(gateway: GatewayServer, service: str) -> dict[str, UpstreamState]:
    """The upstreams of `service` in a GatewayServer: its current runtime's, else those of a removed
    service still draining."""
    runtimes = [r for r in gateway.retired if r.name == service]
    current = gateway.snapshot.services.get(service)
    if current is not None:
        runtimes.append(current)
    return {address: UpstreamState(up.healthy, up.draining, up.inflight)
            for runtime in runtimes for address, up in runtime.upstreams.items()}
