"""Active health checks: once per service (not per request), each upstream gets a plain
HTTP/1.1 GET of `health.path` every `interval`; the verdict logic is `upstreams.health`.
Also returns ejected upstreams whose time is up once they pass a check."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import TYPE_CHECKING

from surge.upstreams.health import NO_ANSWER_IN_TIME, Check, check_result

if TYPE_CHECKING:
    from surge.upstreams.service import ServiceRuntime
    from surge.upstreams.upstream import Upstream

log = logging.getLogger("surge.upstreams")


async def probe(up: Upstream, path: str, timeout: float) -> tuple[int, str]:
    """The status code of one health request, and what happened when there is none:
    (NO_ANSWER_IN_TIME, "timeout") when `timeout` passed first, (0, why) when there was no
    valid answer (`connection refused`, `connection reset by peer`, `no HTTP answer`...)."""
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(up.host, up.port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {up.address}\r\n"
                         "User-Agent: surge-health\r\nConnection: close\r\n\r\n".encode())
            line = await reader.readline()
        parts = line.split(b" ", 2)
        if len(parts) >= 2 and parts[0].startswith(b"HTTP/1.") and parts[1].isdigit():
            return int(parts[1]), ""
        return 0, "no HTTP answer" if line else "closed without answering"
    except TimeoutError:
        return NO_ANSWER_IN_TIME, "timeout"
    except OSError as exc:
        return 0, os_error_reason(exc)
    except ValueError:  # a status line longer than the reader's limit
        return 0, "no HTTP answer"
    finally:
        if writer is not None:
            writer.close()


def os_error_reason(exc: OSError) -> str:
    """`connection refused`, `no route to host`...: the system's words for the errno (asyncio's
    own message names the address, which the log line already does)."""
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host ({exc.strerror})"
    if exc.errno:
        return os.strerror(exc.errno).lower()
    return str(exc) or type(exc).__name__


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
        if spec is None:  # a reload took the checks away since this one was planned
            return
        status, error = await probe(up, spec.path, spec.timeout)
        result = check_result(status, spec.expect)
        self.service.health_result(up, result, time.monotonic(), error or f"status {status}")
        if due and result is Check.PASSED:
            self.service.return_ejected(up)

    def check_soon(self, up: Upstream) -> None:
        """A new upstream is checked at once, so it is warmed without waiting an interval."""
        if self.service.spec.health is not None:
            asyncio.get_running_loop().create_task(self.check(up, False))
