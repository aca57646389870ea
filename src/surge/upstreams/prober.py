"""Active health checks: once per service (not per request), each upstream gets a plain
HTTP/1.1 GET of `health.path` every `interval`; the verdict logic is `upstreams.health`.
Also returns ejected upstreams whose time is up once they pass a check."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from surge.upstreams.health import NO_ANSWER_IN_TIME, Check, check_result

if TYPE_CHECKING:
    from surge.upstreams.service import ServiceRuntime
    from surge.upstreams.upstream import Upstream

log = logging.getLogger("surge.upstreams")


async def probe(up: Upstream, path: str, timeout: float) -> int:
    """The status code of one health request; NO_ANSWER_IN_TIME when `timeout` passed first,
    0 when there was no valid answer (refused, reset, not HTTP)."""
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(up.host, up.port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {up.address}\r\n"
                         "User-Agent: surge-health\r\nConnection: close\r\n\r\n".encode())
            line = await reader.readline()
        parts = line.split(b" ", 2)
        if len(parts) >= 2 and parts[0].startswith(b"HTTP/1.") and parts[1].isdigit():
            return int(parts[1])
        return 0
    except TimeoutError:
        return NO_ANSWER_IN_TIME
    except (OSError, ValueError):
        return 0
    finally:
        if writer is not None:
            writer.close()


class Prober:
    """Runs one service's checks until cancelled."""

    def __init__(self, service: ServiceRuntime) -> None:
        self.service = service
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Check every `interval` from now on; the first round is `round()`, awaited before the
        gateway listens, or `check_soon` for each upstream of a service added later."""
        self.task = asyncio.get_running_loop().create_task(self.run())

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def run(self) -> None:
        while True:
            spec = self.service.spec.health
            await asyncio.sleep(spec.interval if spec is not None else 1.0)
            await self.round()

    async def round(self) -> None:
        """Check every upstream once (and return ejected ones whose time is up)."""
        try:
            await self._round()
        except Exception:  # a bug here must not stop checking, nor the gateway's start
            log.exception("health checks of service %s failed", self.service.name)

    async def _round(self) -> None:
        service = self.service
        due = service.outlier.due(time.monotonic())  # the gateway's clock (see server.py)
        targets = [u for u in service.upstreams.values() if not u.draining]
        if service.spec.health is None:
            for up in due:
                service.return_ejected(up)
            return
        await asyncio.gather(*(self.check(up, up in due) for up in targets))

    async def check(self, up: Upstream, due: bool) -> None:
        spec = self.service.spec.health
        result = check_result(await probe(up, spec.path, spec.timeout), spec.expect)
        self.service.health_result(up, result, time.monotonic())
        if due and result is Check.PASSED:
            self.service.return_ejected(up)

    def check_soon(self, up: Upstream) -> None:
        """A new upstream is checked at once, so it is warmed without waiting an interval."""
        if self.service.spec.health is not None:
            asyncio.get_running_loop().create_task(self.check(up, False))
