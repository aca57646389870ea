"""The admin API's HTTP/1.1 server side: the request and response values, and one coroutine
per connection that parses with httptools, enforces the limits (head size, head time, body
size), keeps connections alive and hands each whole request to a dispatch function.

Routing and the translation of handler errors live in `surge.admin.server`; nothing here
knows about routes or the control plane. This is not the gateway's hot path: clarity first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

import httptools

from surge.errors import BodyTooLarge, ClientError, HeaderTooLarge, SurgeError
from surge.http.headers import DATE
from surge.masking import mask_credentials
from surge.observe.problem import CONTENT_TYPE as PROBLEM_CONTENT_TYPE
from surge.observe.problem import REQUEST_TIMEOUT, Problem, problem_document, problem_response

READ_SIZE = 64 * 1024
# After an error answer, how long unread request bytes are drained so the client gets to read
# the answer instead of a connection reset.
LINGER_SECONDS = 1.0


@dataclass(frozen=True)
class Limits:
    max_head_bytes: int = 16 * 1024
    max_body_bytes: int = 1024 * 1024
    # The whole request head must arrive within this long of the client starting to wait
    # (connection open, or the previous answer sent); after it, every body read as well.
    header_timeout: float = 10.0


@dataclass
class Request:
    """One whole request. `path` is still percent-encoded; the router decodes each segment."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes = b""
    params: dict[str, str] = field(default_factory=dict)  # filled in by the router match
    keep_alive: bool = True

    def json(self) -> Any:
        """The body as JSON; ClientError (400) when it is not JSON or does not parse. A body
        sent without a type, or as curl's default form type, is read as JSON if it parses:
        `curl -d '{"address": ...}'` just works."""
        content_type = self.headers.get("content-type", "")
        media = content_type.partition(";")[0].strip().lower()
        declared = media == "application/json" or media.endswith("+json")
        if media and not declared and media != "application/x-www-form-urlencoded":
            raise ClientError(f"expected Content-Type: application/json, got {content_type}")
        try:
            return json.loads(self.body)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both are
            hint = "" if declared else " (send a JSON body, Content-Type: application/json)"
            raise ClientError(f"malformed JSON body: {exc}{hint}") from None


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)

    def encode(self, *, head_only: bool = False, close: bool = False) -> bytes:
        """The response bytes; `head_only` (a HEAD request) keeps Content-Length, drops the body."""
        lines = [
            f"HTTP/1.1 {self.status} {HTTPStatus(self.status).phrase}",
            DATE.tick(time.time())[:-2].decode(),
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
        ]
        lines.extend(f"{name}: {value}" for name, value in self.headers)
        if close:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head if head_only else head + self.body


def json_response(
    data: object, status: int = 200, headers: Iterable[tuple[str, str]] = ()
) -> Response:
    return Response(status, _masked(json.dumps(data)), "application/json", list(headers))


def problem(
    entry: Problem, detail: str | None = None, headers: Iterable[tuple[str, str]] = ()
) -> Response:
    """A problem+json response that no SurgeError stands for (e.g. 405)."""
    body = problem_document(entry, detail)
    return Response(entry.status, _masked(body.decode()), PROBLEM_CONTENT_TYPE.decode(),
                    list(headers))


def error_response(error: SurgeError, detail: str | None = None, **extra: object) -> Response:
    """The problem+json response for a SurgeError."""
    return Response(error.problem.status, _masked(error.document(detail, **extra).decode()),
                    PROBLEM_CONTENT_TYPE.decode())


def _masked(text: str) -> bytes:
    """An admin answer may quote a store's URL (a reload refused, a broker down): never with
    its password. (The gateway's own answers quote no URL: they skip this.)"""
    return mask_credentials(text).encode()


Dispatch = Callable[[Request], Awaitable[Response]]


class RequestParser:
    """httptools callbacks gathering whole requests; raises the limit errors from inside them.
    `feed` returns the error that ends the connection, if any; requests completed before it
    are in `ready` and are answered first."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.parser = httptools.HttpRequestParser(self)
        self.ready: list[Request] = []
        self.receiving = False  # some bytes of a not yet complete request have arrived
        self.head_complete = False
        # The client sent `Expect: 100-continue` and waits for a go-ahead before the body.
        self.awaits_continue = False
        self._reset()

    def _reset(self) -> None:
        self._url = bytearray()
        self._headers: dict[str, str] = {}
        self._head_bytes = 0
        self._body = bytearray()

    def feed(self, data: bytes) -> SurgeError | None:
        self.receiving = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            return cause if isinstance(cause, SurgeError) else ClientError(str(cause))
        except httptools.HttpParserUpgrade:
            # The bytes after an upgrade request are not HTTP: answer what came, then close.
            if not self.ready:
                return ClientError("protocol upgrades and CONNECT are not supported")
            self.ready[-1].keep_alive = False
        except httptools.HttpParserError as exc:
            return ClientError(f"malformed request: {exc}")
        return None

    def take_ready(self) -> list[Request]:
        ready, self.ready = self.ready, []
        return ready

    # -- httptools callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset()
        self.head_complete = False

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self._headers[key] = f"{self._headers[key]}, {text}" if key in self._headers else text

    def on_headers_complete(self) -> None:
        self.head_complete = True
        length = self._headers.get("content-length", "0")
        if length.isdigit() and int(length) > self.limits.max_body_bytes:
            raise BodyTooLarge(f"request body over {self.limits.max_body_bytes} bytes")
        self.awaits_continue = self._headers.get("expect", "").lower() == "100-continue"

    def on_body(self, body: bytes) -> None:
        if len(self._body) + len(body) > self.limits.max_body_bytes:
            raise BodyTooLarge(f"request body over {self.limits.max_body_bytes} bytes")
        self._body += body

    def on_message_complete(self) -> None:
        try:
            url = httptools.parse_url(bytes(self._url))
        except httptools.HttpParserInvalidURLError:
            raise ClientError(f"malformed request target {bytes(self._url)!r}") from None
        self.ready.append(Request(
            method=self.parser.get_method().decode("ascii"),
            path=(url.path or b"/").decode("latin-1"),
            query=parse_qs((url.query or b"").decode("latin-1")),
            headers=self._headers,
            body=bytes(self._body),
            keep_alive=self.parser.should_keep_alive(),
        ))
        self.receiving = False
        self.head_complete = False
        self.awaits_continue = False

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.limits.max_head_bytes:
            raise HeaderTooLarge(f"request head over {self.limits.max_head_bytes} bytes")


async def serve_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, dispatch: Dispatch,
    limits: Limits,
) -> None:
    """Answer the requests of one connection in order until either side ends it."""
    loop = asyncio.get_running_loop()
    parse = RequestParser(limits)
    head_deadline = loop.time() + limits.header_timeout
    try:
        while True:
            wait = limits.header_timeout if parse.head_complete else head_deadline - loop.time()
            try:
                data = await asyncio.wait_for(reader.read(READ_SIZE), max(wait, 0.0))
            except TimeoutError:
                if parse.receiving:
                    writer.write(problem_response(
                        REQUEST_TIMEOUT, problem_document(REQUEST_TIMEOUT), close=True))
                    await writer.drain()
                return
            if not data:
                return
            error = parse.feed(data)
            for request in parse.take_ready():
                response = await dispatch(request)
                writer.write(response.encode(
                    head_only=request.method == "HEAD", close=not request.keep_alive))
                await writer.drain()
                if not request.keep_alive:
                    return
                head_deadline = loop.time() + limits.header_timeout
            if error is not None:
                writer.write(problem_response(error.problem, error.document(), close=True))
                await writer.drain()
                await _linger(reader, writer)
                return
            if parse.awaits_continue:  # after the answers to earlier pipelined requests
                parse.awaits_continue = False
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    except ConnectionError:
        return
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close and discard what the client still sends, briefly: closing with unread bytes
    would reset the connection and the client might never read the error answer."""
    if writer.can_write_eof():
        writer.write_eof()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(LINGER_SECONDS):
            while await reader.read(READ_SIZE):
                pass
