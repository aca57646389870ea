"""A minimal client for another process's admin API (the master of `workers: N` uses it to
reach its gateway processes): one request per connection, JSON in and out, bounded in time."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from surge.errors import ConfigError, SurgeError
from surge.observe.problem import BAD_REQUEST, INTERNAL, NOT_FOUND, by_uri


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
    """Turn a gateway process's problem+json answer back into the SurgeError it came from,
    with the same problem (found in the table by its `type`), so that whoever passes it on
    (the master's admin API, a CLI command) answers as the process did."""
    if status < 400:
        return
    try:
        doc = json.loads(content)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        doc = {}
    detail = doc.get("detail") or f"gateway process answered {status}"
    if "problems" in doc:
        raise ConfigError(list(doc["problems"]))
    problem = by_uri(str(doc.get("type", "")))
    if problem is None:  # not one of ours (a proxy in between?): judged by its status
        problem = NOT_FOUND if status == 404 else BAD_REQUEST if status < 500 else INTERNAL
    raise SurgeError(detail, problem=problem)
