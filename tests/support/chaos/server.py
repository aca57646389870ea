"""A misbehaving upstream for the chaos suite: a raw asyncio HTTP/1.1 server (no framework, so
it can break HTTP in ways a framework will not let it).

    PYTHONPATH=tests python -m support.chaos.server --mode reset --port N --name c \\
        --record FILE [--fault-file PATH]

It behaves (200, body = its name, keep-alive) until the fault is on: while `--fault-file`
exists, or always when none is given. Then, per `--mode`:
  ok          keeps behaving (for `flap`, where the harness kills and restarts the process)
  refuse      stops listening and drops every connection: connects are refused
  reset       sends part of a response head, then a TCP RST (SO_LINGER 0)
  hang        reads requests and never answers
  slow        answers, but SLOW_SHARE of requests only after SLOW_SECONDS (a p99 of 5 s)
  garbage     answers bytes that are not HTTP, then closes
  idle-close  answers, then closes the keep-alive connection after IDLE_CLOSE idle seconds
`/healthz` follows the fault in refuse, reset, hang and garbage (the replica is broken) and
answers normally in slow and idle-close (the replica works, badly).

Every request except `/healthz` is appended to `--record` as one JSON line
{"name", "request_id", "method", "path"} when its head and body have arrived, before any
misbehaviour: that is a delivery, so duplicates of non-idempotent requests can be counted.
Request bodies are read by Content-Length only (the chaos load sends no chunked bodies).
Only test code lives here: no Surge imports."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import struct

MODES = ("ok", "refuse", "reset", "hang", "slow", "garbage", "idle-close")
SLOW_SHARE = 0.02
SLOW_SECONDS = 5.0
IDLE_CLOSE = 0.05
FAULT_POLL = 0.02
PARTIAL_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/pl"
GARBAGE = b"\x16\x03\x01\x02\x00 this is not HTTP \xff\xfe\r\n\r\n"


class ChaosServer:
    """What all connections share: the mode, the fault switch, the record file."""

    def __init__(self, mode: str, name: str, record: str, fault_file: str | None) -> None:
        self.mode = mode
        self.name = name.encode()
        self.record_fd = os.open(record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.fault_file = fault_file
        self.connections: set[ChaosConnection] = set()
        self.listener: asyncio.Server | None = None

    def faulty(self) -> bool:
        return self.fault_file is None or os.path.exists(self.fault_file)

    def record(self, method: str, path: str, request_id: str) -> None:
        line = json.dumps({"name": self.name.decode(), "request_id": request_id,
                           "method": method, "path": path}) + "\n"
        os.write(self.record_fd, line.encode())  # one O_APPEND write keeps lines whole

    async def watch_for_refusal(self) -> None:
        """`refuse`: once the fault is on, close the listener and drop every connection."""
        while not self.faulty():
            await asyncio.sleep(FAULT_POLL)
        assert self.listener is not None
        self.listener.close()
        for conn in list(self.connections):
            conn.transport.abort()


class ChaosConnection(asyncio.Protocol):
    def __init__(self, server: ChaosServer) -> None:
        self.server = server
        self.transport: asyncio.Transport
        self.buffer = b""
        self.idle_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        if self.idle_timer is not None:
            self.idle_timer.cancel()

    def data_received(self, data: bytes) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        self.buffer += data
        while not self.transport.is_closing():
            request = self._next_request()
            if request is None:
                return
            self.handle(*request)

    def _next_request(self) -> tuple[str, str, dict[str, str]] | None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        lines = self.buffer[:end].decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        if len(self.buffer) < end + 4 + length:
            return None
        self.buffer = self.buffer[end + 4 + length:]
        method, path = (lines[0].split(" ") + ["", ""])[:2]
        return method, path.partition("?")[0], headers

    def handle(self, method: str, path: str, headers: dict[str, str]) -> None:
        server = self.server
        health = path == "/healthz"
        if not health:
            server.record(method, path, headers.get("x-request-id", ""))
        mode = server.mode if server.faulty() else "ok"
        if mode in ("slow", "idle-close") and health:
            mode = "ok"
        if mode == "refuse":
            self.transport.abort()  # a request that raced the listener's closing
        elif mode == "reset":
            self.transport.write(PARTIAL_HEAD)
            sock = self.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.transport.abort()
        elif mode == "hang":
            pass
        elif mode == "garbage":
            self.transport.write(GARBAGE)
            self.transport.close()
        elif mode == "slow" and random.random() < SLOW_SHARE:
            asyncio.get_running_loop().call_later(SLOW_SECONDS, self.answer)
        else:
            self.answer()
            if mode == "idle-close":
                loop = asyncio.get_running_loop()
                self.idle_timer = loop.call_later(IDLE_CLOSE, self.transport.close)

    def answer(self) -> None:
        if self.transport.is_closing():
            return
        name = self.server.name
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             b"Content-Length: %d\r\nX-Upstream-Name: %s\r\n\r\n%s"
                             % (len(name), name, name))


async def serve(args: argparse.Namespace) -> None:
    server = ChaosServer(args.mode, args.name, args.record, args.fault_file)
    loop = asyncio.get_running_loop()
    server.listener = await loop.create_server(lambda: ChaosConnection(server), args.host,
                                               args.port, reuse_address=True)
    if args.mode == "refuse":
        await server.watch_for_refusal()
        await asyncio.Event().wait()  # stay alive, listening to nothing, until killed
    async with server.listener:
        await server.listener.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="a misbehaving upstream for chaos tests")
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="chaos")
    parser.add_argument("--record", required=True, help="file to append received requests to")
    parser.add_argument("--fault-file", default=None,
                        help="misbehave only while this file exists (default: always)")
    asyncio.run(serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
