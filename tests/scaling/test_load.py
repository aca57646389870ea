"""`surge load` against a tiny real HTTP server started in the test (real sockets)."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from surge.cli import main
from surge.scaling.load import LoadRun, Second, read_replicas
from surge.scaling.profile import parse_profile

pytestmark = pytest.mark.integration

SCALING = json.dumps({"services": [{"name": "api", "replicas": 3, "desired": 4}]}).encode()


class TinyServer:
    """Keep-alive HTTP/1.1: `/` 200, `/fail` 500, `/slow` 200 after 50 ms, `/api/scaling`."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0

    async def __aenter__(self) -> TinyServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                self.requests += 1
                path = head.split(b" ", 2)[1]
                status, body = b"200 OK", b"ok"
                if path == b"/fail":
                    status = b"500 Internal Server Error"
                elif path == b"/slow":
                    await asyncio.sleep(0.05)
                elif path == b"/api/scaling":
                    body = SCALING
                writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_sends_exactly_the_profiles_requests_over_reused_keep_alive_connections():
    seconds: list[Second] = []
    async with TinyServer() as server:
        run = LoadRun(server.url(), parse_profile("100rps for 2s"), duration=2.0,
                      connections=8, on_second=seconds.append)
        result = await run.run()
    assert (result.due, result.sent, result.ok, result.failed) == (200, 200, 200, 0)
    assert len(result.latencies) == 200
    assert server.connections <= 8
    assert seconds and seconds[0].target_rate == 100 and seconds[0].replicas == "-"
    assert 50 <= seconds[0].achieved_rate <= 150


async def test_errors_are_counted_by_kind():
    async with TinyServer() as server:
        failing = await LoadRun(server.url("/fail"), parse_profile("50rps for 1s"),
                                duration=1.0, connections=4).run()
    refused = await LoadRun(f"http://127.0.0.1:{free_port()}/", parse_profile("20rps for 1s"),
                            duration=1.0, connections=4).run()
    assert failing.errors == {"500": 50} and failing.ok == 0
    assert refused.errors == {"refused": 20}


async def test_a_request_slower_than_the_timeout_fails_as_timeout():
    async with TinyServer() as server:
        result = await LoadRun(server.url("/slow"), parse_profile("20rps for 1s"), duration=1.0,
                               connections=4, timeout=0.01).run()
    assert result.errors == {"timeout": 20}


async def test_requests_that_wait_for_a_busy_pool_count_late_and_their_wait_counts_as_latency():
    async with TinyServer() as server:
        # One connection, 50 ms per answer, 30 due per second: the backlog grows.
        result = await LoadRun(server.url("/slow"), parse_profile("30rps for 1s"), duration=1.0,
                               connections=1).run()
    assert result.ok == 30
    assert result.late > 10
    assert max(result.latencies) > 0.3  # measured from when each was due, not when sent


async def test_replicas_come_from_the_admin_api_when_reachable():
    async with TinyServer() as admin:
        assert await read_replicas(f"127.0.0.1:{admin.port}") == "api=3/4"
        seconds: list[Second] = []
        await LoadRun(admin.url(), parse_profile("10rps for 1.2s"), duration=1.2,
                      admin=admin.url(), on_second=seconds.append).run()
    assert seconds[0].replicas == "api=3/4"
    assert await read_replicas(f"127.0.0.1:{free_port()}") == "-"


def test_surge_load_prints_a_live_line_and_a_summary(capsys):
    async def serve_then_load() -> int:
        async with TinyServer() as server:
            return await asyncio.to_thread(
                main, ["load", server.url(), "--profile", "40rps for 1.5s", "--connections", "4"]
            )

    assert asyncio.run(serve_then_load()) == 0
    out = capsys.readouterr().out
    assert "target    40.0/s" in out and "replicas -" in out
    assert "60 requests in" in out and "60 ok, 0 failed (none)" in out


def test_surge_load_rejects_a_bad_profile_with_status_2(capsys):
    assert main(["load", "http://127.0.0.1:1/", "--profile", "lots"]) == 2
    assert "profile segment 'lots'" in capsys.readouterr().err
