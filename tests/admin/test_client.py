"""The client another process's admin API is reached with (the master of `workers: N` uses it on
its gateway processes), over real sockets: a peer that closes without answering is a
connection error, which the master's loops expect, never an IndexError that would end them."""

from __future__ import annotations

import asyncio

import pytest

from surge.admin.client import call


async def _closing_server(reply: bytes) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.write(reply)
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


@pytest.mark.parametrize("reply", [b"", b"HTTP/1.1", b"garbage\r\n\r\n"])
async def test_a_peer_closing_without_an_answer_is_a_connection_error(reply):
    server = await _closing_server(reply)
    port = server.sockets[0].getsockname()[1]
    async with server:
        with pytest.raises(ConnectionResetError, match=f"no HTTP answer from 127.0.0.1:{port}"):
            await call(port, "GET", "/api/services")


async def test_an_answer_is_its_status_and_body():
    server = await _closing_server(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}")
    async with server:
        assert await call(server.sockets[0].getsockname()[1], "GET", "/x") == (404, b"{}")
