"""The upstream replica that integration tests put behind the gateway: a pure ASGI app.

Run it as `PYTHONPATH=tests python -m support.upstream_app --port N --name a` (or through
`python -m uvicorn support.upstream_app:app` with `UPSTREAM_NAME` set). Tests steer it through
the environment: `UPSTREAM_SICK_FILE` (while that file exists `/healthz` answers 503) and
`UPSTREAM_RECORD_FILE` (where `POST /record` appends one JSON line per delivery);
`UPSTREAM_KEEP_ALIVE` sets uvicorn's `timeout_keep_alive` in seconds (its default is 5).

Endpoints (every response carries `X-Upstream-Name`):
  GET /healthz        200 `ok`, or 503 `sick`
  GET|HEAD /name      the replica's name as text
  POST|PUT /echo      the request body streamed back chunk by chunk as it arrives
  GET /bytes/N        N bytes of `pattern(N)`, chunked, in 64 KiB pieces
  GET /slow?ms=N      waits N ms, then 200 `slow`
  GET /status/N       answers with status N
  GET /headers        the received headers as a JSON object (repeated names joined by ", ")
  POST /record        appends {"name", "request_id", "body", "peer"} to the record file and
                      answers `X-Upstream-Peer` (the connection's client address: a reused
                      connection is recognised by it)
  WS  /ws             echoes every text and binary message
Only test code lives here: no Surge imports, so a broken gateway never breaks its upstream."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CHUNK = 64 * 1024
_PATTERN = bytes(range(256)) * (CHUNK // 256)


def pattern(n: int) -> bytes:
    """The exact body `GET /bytes/N` sends, for integrity checks through the gateway."""
    return (_PATTERN * (n // CHUNK + 1))[:n]


def replica_name() -> str:
    return os.environ.get("UPSTREAM_NAME", "upstream")


def _is_sick() -> bool:
    sick_file = os.environ.get("UPSTREAM_SICK_FILE")
    return bool(sick_file) and os.path.exists(sick_file)


async def _start(send: Send, status: int, content_type: bytes = b"text/plain",
                 length: int | None = None) -> None:
    headers = [(b"content-type", content_type), (b"x-upstream-name", replica_name().encode())]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def _respond(send: Send, status: int, body: bytes,
                   content_type: bytes = b"text/plain") -> None:
    await _start(send, status, content_type, len(body))
    await send({"type": "http.response.body", "body": body})


async def healthz(scope: Scope, receive: Receive, send: Send) -> None:
    if _is_sick():
        await _respond(send, 503, b"sick")
    else:
        await _respond(send, 200, b"ok")


async def name(scope: Scope, receive: Receive, send: Send) -> None:
    await _respond(send, 200, replica_name().encode())


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    # The response starts before the body is read: a proxy that buffers the whole request
    # before forwarding it shows up as a stalled echo.
    length = _header(scope, b"content-length")
    await _start(send, 200, b"application/octet-stream",
                 int(length) if length is not None else None)
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        more = message.get("more_body", False)
        await send({"type": "http.response.body", "body": message.get("body", b""),
                    "more_body": more})


async def stream_bytes(scope: Scope, receive: Receive, send: Send, n: int) -> None:
    await _start(send, 200, b"application/octet-stream")  # no length: chunked encoding
    for offset in range(0, n, CHUNK):
        piece = _PATTERN[: min(CHUNK, n - offset)]
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def slow(scope: Scope, receive: Receive, send: Send) -> None:
    query = parse_qs(scope.get("query_string", b"").decode())
    await asyncio.sleep(int(query.get("ms", ["100"])[0]) / 1000)
    await _respond(send, 200, b"slow")


async def status(scope: Scope, receive: Receive, send: Send, code: int) -> None:
    if code in (204, 304) or code < 200:
        await _start(send, code)
        await send({"type": "http.response.body", "body": b""})
        return
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = "status"
    await _respond(send, code, phrase.encode())


async def headers(scope: Scope, receive: Receive, send: Send) -> None:
    received: dict[str, str] = {}
    for key, value in scope["headers"]:
        k, v = key.decode("latin-1"), value.decode("latin-1")
        received[k] = f"{received[k]}, {v}" if k in received else v
    await _respond(send, 200, json.dumps(received).encode(), b"application/json")


async def record(scope: Scope, receive: Receive, send: Send) -> None:
    body = await _read_body(receive)
    host, port = scope.get("client") or ("-", 0)
    peer = f"{host}:{port}"
    line = json.dumps({
        "name": replica_name(),
        "request_id": (_header(scope, b"x-request-id") or b"").decode("latin-1"),
        "body": body.decode("utf-8", "replace"),
        "peer": peer,
    }) + "\n"
    path = os.environ.get("UPSTREAM_RECORD_FILE")
    if not path:
        await _respond(send, 500, b"UPSTREAM_RECORD_FILE is not set")
        return
    # One O_APPEND write per line keeps lines whole when several replicas share the file.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"text/plain"), (b"x-upstream-name", replica_name().encode()),
        (b"x-upstream-peer", peer.encode()), (b"content-length", b"8")]})
    await send({"type": "http.response.body", "body": b"recorded"})


async def websocket_echo(scope: Scope, receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.receive":
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})
        else:  # websocket.disconnect
            return


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    kind = scope["type"]
    if kind == "lifespan":
        await lifespan(receive, send)
        return
    path = scope["path"]
    if kind == "websocket":
        if path == "/ws":
            await websocket_echo(scope, receive, send)
        else:
            await send({"type": "websocket.close", "code": 1008})
        return
    method = scope["method"]
    simple = {
        ("GET", "/healthz"): healthz,
        ("GET", "/name"): name,
        ("HEAD", "/name"): name,  # uvicorn sends the head only
        ("POST", "/echo"): echo,
        ("PUT", "/echo"): echo,
        ("GET", "/slow"): slow,
        ("GET", "/headers"): headers,
        ("POST", "/record"): record,
    }
    handler = simple.get((method, path))
    if handler is not None:
        await handler(scope, receive, send)
    elif method == "GET" and path.startswith("/bytes/") and path[7:].isdigit():
        await stream_bytes(scope, receive, send, int(path[7:]))
    elif method == "GET" and path.startswith("/status/") and path[8:].isdigit():
        await status(scope, receive, send, int(path[8:]))
    else:
        await _respond(send, 404, b"not found")


def _header(scope: Scope, wanted: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == wanted:
            return value
    return None


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Surge's test upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default=None, help="defaults to $UPSTREAM_NAME")
    args = parser.parse_args(argv)
    if args.name:
        os.environ["UPSTREAM_NAME"] = args.name
    import uvicorn

    keep_alive = float(os.environ.get("UPSTREAM_KEEP_ALIVE", "5"))
    uvicorn.run(app, host=args.host, port=args.port, loop="uvloop", http="httptools",
                log_level="warning", lifespan="on",
                # The connection's own address in scope["client"] (for `peer`), not the one
                # the gateway's X-Forwarded-For names.
                proxy_headers=False,
                timeout_keep_alive=keep_alive)  # type: ignore[arg-type]  # a float works


if __name__ == "__main__":
    main()
