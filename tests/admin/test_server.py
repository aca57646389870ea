"""The server's lifecycle and error translation: binding, extension routes, a crashing
handler, closing with open connections, running on uvloop."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
import uvloop

from surge.admin import AdminServer, Request, Response, Router, json_response
from surge.errors import RateLimited

pytestmark = pytest.mark.integration


async def test_binding_a_taken_port_raises_an_oserror_naming_the_address(
    server: AdminServer, control
) -> None:
    second = AdminServer(control, "127.0.0.1", server.port)
    with pytest.raises(OSError, match=f"admin API cannot listen on 127.0.0.1:{server.port}"):
        await second.start()


async def test_routes_added_from_outside_are_served(
    server: AdminServer, client: httpx.AsyncClient
) -> None:
    async def queue(request: Request) -> Response:
        return json_response({"queue": request.params["name"], "depth": 0})

    server.router.add("GET", "/api/jobs/queues", lambda request: json_response({"queues": []}))
    server.router.add("GET", "/api/jobs/queues/{name}", queue)
    assert (await client.get("/api/jobs/queues")).json() == {"queues": []}
    assert (await client.get("/api/jobs/queues/mail%20out")).json()["queue"] == "mail out"


async def test_a_router_passed_in_keeps_its_routes_and_gains_the_control_routes(
    control,
) -> None:
    router = Router()
    router.add("GET", "/api/scaling", lambda request: json_response({"services": []}))
    async with AdminServer(control, "127.0.0.1", 0, router) as admin:
        async with httpx.AsyncClient(base_url=admin.url) as client:
            assert (await client.get("/api/scaling")).status_code == 200
            assert (await client.get("/healthz")).status_code == 200


async def test_a_surge_error_from_a_handler_becomes_its_problem(
    server: AdminServer, client: httpx.AsyncClient
) -> None:
    def limited(request: Request) -> Response:
        raise RateLimited("key k is over 10/second")

    server.router.add("GET", "/api/ratelimits/{key}", limited)
    response = await client.get("/api/ratelimits/k")
    assert response.status_code == 429
    assert response.json()["detail"] == "key k is over 10/second"


async def test_a_crashing_handler_is_a_500_problem_logged_not_leaked(
    server: AdminServer, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(request: Request) -> Response:
        raise KeyError("secret-internal-detail")

    server.router.add("GET", "/api/broken", broken)
    with caplog.at_level(logging.ERROR, logger="surge.admin"):
        response = await client.get("/api/broken")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "secret-internal-detail" not in response.text
    assert "Traceback" not in response.text
    assert "secret-internal-detail" in caplog.text  # the traceback went to the log
    assert (await client.get("/healthz")).status_code == 200  # same connection, still served


async def test_close_ends_open_keep_alive_connections(control) -> None:
    admin = AdminServer(control, "127.0.0.1", 0)
    await admin.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", admin.port)
    writer.write(b"GET /healthz HTTP/1.1\r\n\r\n")
    await reader.readuntil(b'"ok"}')
    await asyncio.wait_for(admin.close(), 5)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", admin.port)


async def test_close_is_safe_before_start_and_twice(control) -> None:
    admin = AdminServer(control, "127.0.0.1", 0)
    await admin.close()
    await admin.start()
    await admin.close()
    await admin.close()


def test_it_runs_on_a_uvloop_event_loop_the_caller_owns(control) -> None:
    async def scenario() -> tuple[str, int]:
        async with AdminServer(control, "127.0.0.1", 0) as admin:
            async with httpx.AsyncClient(base_url=admin.url) as client:
                response = await client.post(
                    "/api/services/api/upstreams", json={"address": "127.0.0.1:8109"})
                return type(asyncio.get_running_loop()).__module__, response.status_code

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        module, status = runner.run(scenario())
    assert module.startswith("uvloop") and status == 201


async def test_a_handler_returning_something_else_than_a_response_is_a_500(
    server: AdminServer, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    server.router.add("GET", "/api/dict", lambda request: {"not": "a Response"})
    with caplog.at_level(logging.ERROR, logger="surge.admin"):
        response = await client.get("/api/dict")
    assert response.status_code == 500
    assert "not a Response" in caplog.text
