"""A service's latency estimates: stale ones decay so no upstream starves."""

import asyncio

from surge.config import parse
from surge.upstreams.service import ServiceRuntime


def _service() -> ServiceRuntime:
    config = parse("services: {a: {upstreams: ['127.0.0.1:1', '127.0.0.1:2']}}\n"
                   "routes: [{prefix: /, service: a}]")
    return ServiceRuntime("a", config.services["a"], connect_timeout=1.0)


def test_a_starved_upstreams_stale_latency_decays_towards_the_best():
    async def run() -> None:
        service = _service()
        fast, slow = (service.add(a, 1, 0.0) for a in ("127.0.0.1:1", "127.0.0.1:2"))
        fast.ewma, slow.ewma = 0.001, 0.5
        service.decay_stale_latency()          # first look: remembers, changes nothing
        assert slow.ewma == 0.5
        fast.ewma = 0.0011                      # the fast one keeps answering
        service.decay_stale_latency()
        assert abs(slow.ewma - (0.0011 + (0.5 - 0.0011) / 2)) < 1e-9
        for _ in range(12):
            fast.ewma += 1e-6
            service.decay_stale_latency()
        assert slow.ewma < 0.002                # tried again soon, not starved forever

    asyncio.run(run())
