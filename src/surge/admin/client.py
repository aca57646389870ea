"""A minimal client for another process's admin API (the master of `workers: N` uses it to
reach its gateway processes): one request per connection, JSON in and out, bounded in time."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from surge.errors import ClientError, ConfigError, NotFound, SurgeError


async def call(port: int, method: str, path: str, body: Any = None, *,
               host: str = "127.0.0.1", timeout: float = 5.0) -> tuple[int, bytes]:
    """(status, body) of one request to http://host:port/path."""
    payload = json.dumps(body).encode() if body is not None else b""
    head = (f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n")
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(head.encode() + payload)
            raw = await reader.read()
        finally:
            writer.close()
    status_line, _, rest = raw.partition(b"\r\n")
    _, _, content = rest.partition(b"\r\n\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        # Closed before answering (a process killed mid-request, say): a connection error,
        # which callers already expect, not an IndexError that would end their loop.
        raise ConnectionResetError(f"no HTTP answer from {host}:{port}{path}")
    return int(parts[1]), content


def not_answering(host: str, port: int | str) -> str:
    """What to tell a user whose command found no admin API at host:port."""
    return f"no admin API answers on {host}:{port}: is `surge up` running on {host}:{port}?"


def raise_for_problem(status: int, content: bytes) -> None:
    """Turn a gateway process's problem+json answer back into the SurgeError it came from."""
    if status < 400:
        return
    try:
        doc = json.loads(content)
    except ValueError:
        doc = {}
    detail = doc.get("detail") or f"gateway process answered {status}"
    if "problems" in doc:
        raise ConfigError(list(doc["problems"]))
    if status == 404:
        raise NotFound(detail)
    if status < 500:
        raise ClientError(detail)
    raise SurgeError(detail)
