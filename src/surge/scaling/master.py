"""Supervised replicas under `gateway.workers: N`: the master (`app/workers.py`, the one
master there is) runs the one supervisor and the one autoscaler loop, and its N gateway
processes behave to them as one gateway: `MasterMembership`.

Changes go out through the master's admin fan-out (a ready replica is added to every gateway
process, a leaving one drained in every one, and both are replayed into a replacement). What
comes back is read from each gateway process's private `GET /api/worker/state` (the path kept
as it was): every upstream's health verdict, draining flag and in-flight count (also of
services a reload removed, until they have drained), and each service's latency histogram, as
plain numbers. It is asked for only while a replica warms or drains and once per control
period, and one answer serves every caller for `FRESH` seconds. Merged: an upstream is healthy
when every gateway process says so, draining when one does; in-flight counts and histograms
are summed (a gateway process's counts restart with it)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from surge.admin.client import call
from surge.admin.http import Request, Response, json_response
from surge.admin.router import Router
from surge.observe.metrics import BUCKETS, GatewayStats
from surge.scaling.membership import Membership, UpstreamState, upstream_states

if TYPE_CHECKING:  # handed in by the process wiring, which imports scaling, not the reverse
    from surge.app.workers import Master
    from surge.gateway.server import GatewayServer

log = logging.getLogger("surge.workers")  # as users know the master's log lines

STATE_PATH = "/api/worker/state"
FRESH = 0.05  # seconds one reading of the gateway processes serves every caller
MERGED_ROUTE = "workers"  # the route label of the merged histograms


# -- the gateway process side ----------------------------------------------------------------------

def gateway_state(gateway: GatewayServer) -> dict[str, Any]:
    """What one gateway process reports to the master."""
    names = {*gateway.snapshot.services, *(r.name for r in gateway.retired)}
    buckets: dict[str, list[int]] = {}
    for (_, service), route in list(gateway.stats.routes.items()):
        mine = buckets.setdefault(service, [0] * (len(BUCKETS) + 1))
        buckets[service] = [a + b for a, b in zip(mine, route.buckets, strict=True)]
    return {"pid": os.getpid(), "buckets": buckets,
            "upstreams": {name: {address: [s.healthy, s.draining, s.inflight]
                                 for address, s in upstream_states(gateway, name).items()}
                          for name in names}}


def register_state_route(router: Router, gateway: GatewayServer) -> None:
    """`GET /api/worker/state` on a gateway process's private admin API."""

    def state(request: Request) -> Response:
        return json_response(gateway_state(gateway))

    router.add("GET", STATE_PATH, state)


# -- the master side -------------------------------------------------------------------------------

class MasterMembership(Membership):
    """The master's gateway processes, as one gateway to the supervisor and the loop. `master`
    fans `add_upstream` and `remove_upstream` out, and lists the `admin_ports()` of the live
    gateway processes."""

    def __init__(self, master: Master | None, now: Any = time.monotonic) -> None:
        super().__init__(master)
        self.master = master
        self.now = now
        self.merged = GatewayStats()  # every gateway process's histograms, added up
        self.stats = self.merged
        self.counted: dict[tuple[int, int], dict[str, list[int]]] = {}  # (port, pid) -> seen
        self.states: dict[int, dict[str, Any]] = {}  # admin port -> its last state
        self.read_at = -FRESH
        self.reading: asyncio.Task[None] | None = None

    async def upstreams(self, service: str) -> dict[str, UpstreamState]:
        await self.refresh()
        return merge_upstreams([s.get("upstreams", {}).get(service, {})
                                for s in self.states.values()])

    async def refresh(self) -> None:
        """Read every live gateway process's state, unless a reading is fresh or under way."""
        if self.reading is None and self.now() - self.read_at >= FRESH:
            self.reading = asyncio.get_running_loop().create_task(self._read())
        if self.reading is not None:
            await asyncio.shield(self.reading)

    async def _read(self) -> None:
        try:
            ports = self.master.admin_ports() if self.master is not None else []
            answers = await asyncio.gather(*(call(port, "GET", STATE_PATH, timeout=2.0)
                                             for port in ports), return_exceptions=True)
            states = {}
            for port, answer in zip(ports, answers, strict=True):
                if isinstance(answer, BaseException) or answer[0] != 200:
                    continue  # starting or stopping: the others still count
                with contextlib.suppress(ValueError):
                    states[port] = json.loads(answer[1])
            self.states = states
            for port, state in states.items():
                self.count(port, state)
        finally:
            self.read_at = self.now()
            self.reading = None

    def count(self, port: int, state: dict[str, Any]) -> None:
        """Add what a gateway process served since its last reading to the merged histograms."""
        key = (port, int(state.get("pid", 0)))
        seen = self.counted.setdefault(key, {})
        for service, buckets in state.get("buckets", {}).items():
            before = seen.get(service, [0] * len(buckets))
            merged = self.merged.route(MERGED_ROUTE, service).buckets
            for i, (now, then) in enumerate(zip(buckets, before, strict=True)):
                merged[i] += max(now - then, 0)
            seen[service] = buckets
        for gone in [k for k in self.counted if k[0] == port and k != key]:
            del self.counted[gone]  # a replaced gateway process: its successor counts from 0


def merge_upstreams(views: list[dict[str, list[Any]]]) -> dict[str, UpstreamState]:
    """One upstream state per address from the gateway processes' views: healthy only when
    every one that answered has it healthy, draining when any drains it, in-flight summed."""
    merged: dict[str, UpstreamState] = {}
    for address in {a for view in views for a in view}:
        states = [view.get(address) for view in views]
        present = [s for s in states if s is not None]
        merged[address] = UpstreamState(
            healthy=len(present) == len(views) and all(s[0] for s in present),
            draining=any(s[1] for s in present),
            inflight=sum(int(s[2]) for s in present))
    return merged
