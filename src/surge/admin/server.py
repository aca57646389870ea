"""The admin API server: binds `gateway.admin`, serves the control-plane routes plus whatever
other features add to `.router`, and turns every handler outcome into an HTTP answer.

A SurgeError becomes its problem+json (a ConfigError with its `problems` list); anything else
becomes a 500 problem, logged with its traceback and never shown to the client. Runs on the
caller's event loop (asyncio or uvloop): no threads, no loop of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging

from surge.admin.api import ControlRoutes
from surge.admin.control import ControlPlane
from surge.admin.http import Limits, Request, Response, error_response, problem, serve_connection
from surge.admin.router import Router
from surge.errors import ConfigError, NotFound, SurgeError
from surge.observe.problem import METHOD_NOT_ALLOWED

logger = logging.getLogger("surge.admin")


class AdminServer:
    def __init__(
        self, control: ControlPlane, host: str = "127.0.0.1", port: int = 9000,
        router: Router | None = None, *, limits: Limits | None = None,
    ) -> None:
        self.router = router if router is not None else Router()
        ControlRoutes(control).register(self.router)
        self.host = host
        self.port = port  # the bound port once started (useful with port 0)
        self.limits = limits or Limits()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Bind and start accepting. An OSError naming the address when it cannot bind."""
        try:
            self._server = await asyncio.start_server(
                self._on_connection, self.host, self.port, reuse_address=True
            )
        except OSError as exc:
            raise OSError(
                exc.errno, f"admin API cannot listen on {self.host}:{self.port}: {exc.strerror}"
            ) from exc
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("admin API listening on %s", self.url)

    async def close(self) -> None:
        """Stop accepting and end every open connection (a request in a handler is cancelled)."""
        if self._server is None:
            return
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> AdminServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def dispatch(self, request: Request) -> Response:
        """The answer to one request; never raises."""
        match = self.router.resolve(request.method, request.path)
        if match.handler is None:
            if not match.allowed:
                return error_response(NotFound(f"no admin route for {request.path}"))
            allowed = ", ".join(match.allowed)
            return problem(METHOD_NOT_ALLOWED,
                           f"{request.method} is not allowed here; use {allowed}",
                           headers=[("Allow", allowed)])
        request.params = match.params
        try:
            response = match.handler(request)
            if inspect.isawaitable(response):
                response = await response
            if not isinstance(response, Response):
                raise TypeError(f"handler returned {type(response).__name__}, not a Response")
            return response
        except ConfigError as exc:
            count = len(exc.problems)
            return error_response(exc, f"{count} problem{'s' * (count != 1)} in the configuration",
                                  problems=exc.problems)
        except SurgeError as exc:
            return error_response(exc)
        except Exception:
            logger.exception("admin API: %s %s failed", request.method, request.path)
            return error_response(SurgeError(), "the admin API could not answer; see its log")

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None  # start_server runs each connection in its own task
        self._connections.add(task)
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await serve_connection(reader, writer, self.dispatch, self.limits)
        finally:
            self._connections.discard(task)
