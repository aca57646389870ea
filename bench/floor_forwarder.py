"""The floor of the approach: the least a uvloop + httptools forwarder can do per request.

    .venv/bin/python bench/floor_forwarder.py LISTEN_PORT UPSTREAM_PORT

`bench/proxy.py --floor` runs it beside nginx and Surge on the same core, so the figures say
how much of Surge's cost is the runtime (Python, uvloop, httptools, system calls) and how much
is Surge's own work. It is a measuring stick, not a proxy: one upstream, GET only, no routing,
no limits, no error handling, no health, no metrics."""

from __future__ import annotations

import asyncio
import sys

import httptools
import uvloop

UPSTREAM = ("127.0.0.1", 0)
idle: list[Upstream] = []


class Upstream(asyncio.Protocol):
    def __init__(self) -> None:
        self.client: Client | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.out: list[bytes] = []
        self.headers: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        client = self.client
        self.out = []
        self.parser.feed_data(data)
        if client is not None:
            client.transport.write(b"".join(self.out))

    def on_message_begin(self) -> None:
        self.headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() not in (b"connection", b"keep-alive"):
            self.headers.append(name + b": " + value + b"\r\n")

    def on_headers_complete(self) -> None:
        self.out.append(b"HTTP/1.1 200 OK\r\n" + b"".join(self.headers) + b"\r\n")

    def on_body(self, body: bytes) -> None:
        self.out.append(body)

    def on_message_complete(self) -> None:
        self.client = None
        idle.append(self)


class Client(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers: list[bytes] = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append(name + b": " + value + b"\r\n")

    def on_message_complete(self) -> None:
        head = (b"GET " + self.url + b" HTTP/1.1\r\n" + b"".join(self.headers)
                + b"X-Forwarded-For: 127.0.0.1\r\n\r\n")
        if idle:
            upstream = idle.pop()
            upstream.client = self
            upstream.transport.write(head)
        else:
            asyncio.get_running_loop().create_task(self.connect(head))

    async def connect(self, head: bytes) -> None:
        _, upstream = await asyncio.get_running_loop().create_connection(Upstream, *UPSTREAM)
        upstream.client = self
        upstream.transport.write(head)


async def serve(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Client, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    UPSTREAM = ("127.0.0.1", int(sys.argv[2]))
    uvloop.run(serve(int(sys.argv[1])))
