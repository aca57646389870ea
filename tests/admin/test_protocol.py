"""The HTTP/1.1 side over raw sockets: keep-alive, pipelining, HEAD, the limits, and bad
bytes that must get a 400 without taking the server down."""

from __future__ import annotations

import asyncio
import json

import pytest

from surge.admin import AdminServer, Limits

pytestmark = pytest.mark.integration


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await asyncio.wait_for(reader.readexactly(length), 5)
    return int(status_line.split()[1]), headers, body


async def connect(server: AdminServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(server.host, server.port)


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), 5) == b""
    except ConnectionResetError:
        return True


async def still_serves(server: AdminServer) -> bool:
    reader, writer = await connect(server)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    status, _, body = await read_response(reader)
    writer.close()
    return status == 200 and json.loads(body) == {"status": "ok"}


async def test_two_requests_share_one_keep_alive_connection(server: AdminServer) -> None:
    reader, writer = await connect(server)
    for path in (b"/healthz", b"/api/services"):
        writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, _ = await read_response(reader)
        assert status == 200
        assert "connection" not in headers
    writer.close()


async def test_pipelined_requests_are_answered_in_order(server: AdminServer) -> None:
    reader, writer = await connect(server)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                 b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
                 b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    statuses = [(await read_response(reader))[0] for _ in range(3)]
    assert statuses == [200, 404, 200]
    assert await closed_by_server(reader)
    writer.close()


async def test_connection_close_and_http_1_0_end_the_connection(server: AdminServer) -> None:
    for request in (b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
                    b"GET /healthz HTTP/1.0\r\n\r\n"):
        reader, writer = await connect(server)
        writer.write(request)
        status, headers, _ = await read_response(reader)
        assert status == 200 and headers["connection"] == "close"
        assert await closed_by_server(reader)
        writer.close()


async def test_head_sends_the_length_but_no_body_and_keeps_the_connection(
    server: AdminServer,
) -> None:
    reader, writer = await connect(server)
    writer.write(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200 OK") and b"Content-Length: 16" in head
    status, _, body = await read_response(reader)  # the next bytes are the GET's answer
    assert status == 200 and body == b'{"status": "ok"}'
    writer.close()


@pytest.mark.parametrize("garbage", [
    b"NOT HTTP AT ALL\r\n\r\n",
    b"GET / HTTP/9.9\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n",
    b"POST /api/reload HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
    b"\x00\xff\xfe\r\n\r\n",
])
async def test_malformed_bytes_get_a_400_problem_and_the_server_keeps_serving(
    server: AdminServer, garbage: bytes
) -> None:
    reader, writer = await connect(server)
    writer.write(garbage)
    status, headers, body = await read_response(reader)
    assert status == 400
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    assert json.loads(body)["status"] == 400
    assert await closed_by_server(reader)
    writer.close()
    assert await still_serves(server)


async def test_a_declared_body_over_1_mib_is_413_before_it_is_read(server: AdminServer) -> None:
    reader, writer = await connect(server)
    writer.write(b"POST /api/reload HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n")
    status, _, body = await read_response(reader)
    assert status == 413
    assert json.loads(body)["type"].endswith("/body-too-large")
    writer.close()
    assert await still_serves(server)


async def test_a_sent_body_over_1_mib_is_413_and_the_client_reads_it(
    server: AdminServer,
) -> None:
    reader, writer = await connect(server)
    size = 1024 * 1024 + 512 * 1024
    writer.write(b"POST /api/reload HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % size)
    writer.write(b"x" * size)
    status, _, _ = await read_response(reader)
    assert status == 413
    writer.close()


async def test_a_chunked_body_over_1_mib_is_413(server: AdminServer) -> None:
    reader, writer = await connect(server)
    chunk = b"y" * 65536
    writer.write(b"POST /api/reload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(17):
        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    status, _, _ = await read_response(reader)
    assert status == 413
    writer.close()


async def test_a_body_of_exactly_1_mib_is_accepted(server: AdminServer) -> None:
    reader, writer = await connect(server)
    body = b" " * (1024 * 1024 - 2) + b"{}"
    writer.write(b"POST /api/reload HTTP/1.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    status, _, _ = await read_response(reader)
    assert status == 200
    writer.close()


async def test_a_request_head_over_16_kib_is_431(server: AdminServer) -> None:
    reader, writer = await connect(server)
    writer.write(b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 17000 + b"\r\n\r\n")
    status, _, _ = await read_response(reader)
    assert status == 431
    writer.close()


@pytest.mark.parametrize("limits", [Limits(header_timeout=0.2)])
async def test_a_head_that_does_not_arrive_in_time_is_408_then_closed(
    server: AdminServer, limits: Limits
) -> None:
    reader, writer = await connect(server)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
    status, headers, _ = await read_response(reader)
    assert status == 408 and headers["connection"] == "close"
    assert await closed_by_server(reader)
    writer.close()


@pytest.mark.parametrize("limits", [Limits(header_timeout=0.2)])
async def test_an_idle_keep_alive_connection_is_closed_quietly(
    server: AdminServer, limits: Limits
) -> None:
    reader, writer = await connect(server)
    writer.write(b"GET /healthz HTTP/1.1\r\n\r\n")
    assert (await read_response(reader))[0] == 200
    assert await asyncio.wait_for(reader.read(), 5) == b""  # no 408 for an idle client
    writer.close()


async def test_an_upgrade_request_is_answered_then_the_connection_closed(
    server: AdminServer,
) -> None:
    reader, writer = await connect(server)
    writer.write(b"GET /healthz HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    status, headers, _ = await read_response(reader)
    assert status == 200 and headers["connection"] == "close"
    assert await closed_by_server(reader)
    writer.close()


async def test_a_client_that_disconnects_mid_request_does_not_disturb_the_server(
    server: AdminServer,
) -> None:
    _, writer = await connect(server)
    writer.write(b"POST /api/reload HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc")
    writer.close()
    await writer.wait_closed()
    assert await still_serves(server)


async def test_expect_100_continue_gets_the_go_ahead_before_the_body(
    server: AdminServer,
) -> None:
    reader, writer = await connect(server)
    body = b'{"address": "127.0.0.1:8105"}'
    writer.write(b"POST /api/services/api/upstreams HTTP/1.1\r\nExpect: 100-continue\r\n"
                 b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(body)
    assert (await read_response(reader))[0] == 201
    writer.close()


async def test_expect_100_continue_with_a_body_too_large_gets_413_instead(
    server: AdminServer,
) -> None:
    reader, writer = await connect(server)
    writer.write(b"POST /api/reload HTTP/1.1\r\nExpect: 100-continue\r\n"
                 b"Content-Length: 2000000\r\n\r\n")
    assert (await read_response(reader))[0] == 413
    writer.close()
