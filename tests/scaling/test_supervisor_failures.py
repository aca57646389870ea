"""The supervisor when the gateway side fails, with real replica processes and an in-memory
membership standing in for the gateway: a join that raises (under `workers: N` it crosses the
network) counts as a crash of that replica, which is stopped and started again after its
backoff, instead of its slot being lost for good."""

from __future__ import annotations

import asyncio
import sys

import psutil

from surge.scaling.groups import GroupSpec
from surge.scaling.membership import Membership, UpstreamState
from surge.scaling.supervisor import Supervisor

SERVER = f"{sys.executable} -m http.server {{port}} --bind 127.0.0.1"


class FlakyGateway(Membership):
    """Refuses the first `failures` joins; a member is healthy at once."""

    def __init__(self, failures: int) -> None:
        super().__init__(None)
        self.failures = failures
        self.members: dict[str, UpstreamState] = {}

    async def join(self, service: str, address: str) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError("worker 1 did not answer")
        self.members[address] = UpstreamState(healthy=True, draining=False, inflight=0)

    async def leave(self, service: str, address: str) -> None:
        self.members.pop(address, None)

    async def upstreams(self, service: str) -> dict[str, UpstreamState]:
        return dict(self.members)


async def test_a_join_that_fails_is_a_crash_the_replica_restarts_after_its_backoff():
    gateway = FlakyGateway(failures=1)
    supervisor = Supervisor(gateway, [GroupSpec("api", SERVER)], grace=2.0)
    await supervisor.start()
    try:
        for _ in range(200):
            view = supervisor.view("api")["processes"][0]
            if view["state"] == "ready":
                break
            await asyncio.sleep(0.05)
        assert view["state"] == "ready" and view["starts"] == 2 and view["failures"] == 1
        assert list(gateway.members) == [view["address"]]
        kinds = [e["kind"] for e in supervisor.events.recent("api")]
        assert kinds == ["started", "exited", "started", "ready"]
    finally:
        await supervisor.stop()
    assert not psutil.pid_exists(view["pid"]) and gateway.members == {}
