"""One keep-alive HTTP/1.1 connection to an upstream: parses responses with httptools and hands
each event to the exchange it currently serves. Knows nothing of clients; the exchange does.

An idle connection closed by the upstream is noticed here (`connection_lost`) and leaves its
pool at once, so it is never handed to a request; how long it had been idle teaches the pool
when the upstream closes idle connections (as does a `Keep-Alive: timeout=` it sends). One
that sends more than the answer asked for (bytes after a complete response) is closed, never
reused: what follows would be taken for the answer to the next request on it."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httptools

from surge.http.flow import UPSTREAM_FULL
from surge.http.headers import ResponseHead

if TYPE_CHECKING:
    from surge.upstreams.caller import Caller
    from surge.upstreams.pool import Pool


class Unasked(Exception):
    """Raised from a parser callback when the upstream sends what no request asked for."""


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        "pool", "transport", "parser", "exchange", "closed", "idle_since", "pending", "head",
        "tunnel", "write_paused", "ended",
    )

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        # Set by connection_made, before the pool hands the connection to anyone.
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: Caller | None = None  # a hedge's leg until it answers
        self.closed = False
        self.idle_since = 0.0
        self.pending = b""  # bytes of a response head still being received
        self.head: ResponseHead | None = None
        self.tunnel: asyncio.Transport | None = None
        self.write_paused = False
        # Set (to the upstream's keep-alive) when a response ends within a read; the exchange
        # hears of it after the whole read is parsed, so nothing after it goes unnoticed.
        self.ended: bool | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.write(data)
            return
        exchange = self.exchange
        if exchange is None:
            # Bytes on an idle connection: the upstream is confused; never reuse it.
            self.close()
            return
        if self.head is None:
            self.pending = self.pending + data if self.pending else data
        client = exchange.downstream
        # Collect what this read makes the client get (head, body, last chunk) into one write.
        out: list[bytes] = []
        client.out = out
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            if self.exchange is not None:
                # A leg hands the connection to its exchange at the head: past it, only the
                # exchange is here.
                self.exchange.upstream_upgraded(data[upgrade.args[0]:])
        except httptools.HttpParserError as exc:
            if self.ended is None and self.exchange is not None:
                why = exc.__context__ if isinstance(exc.__context__, Unasked) else exc
                self.exchange.upstream_broken(f"invalid response from upstream: {why}")
            self.close()
        ended, self.ended = self.ended, None
        if ended is not None and self.exchange is not None:
            self.exchange.response_end(self, ended and not self.closed)
        # Read anew: the feed may have cleared it (a narrowed `client.out` would still be `out`).
        if exchange.downstream.out is out:
            client.out = None
            if out:
                client.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed and self.exchange is None and self.idle_since:
            self.pool.closed_idle(self)  # the upstream closed it while idle
        self.closed = True
        self.pool.lost(self)
        exchange = self.exchange
        if exchange is not None:
            self.exchange = None
            exchange.upstream_lost(self, exc)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.exchange is not None:
            self.exchange.downstream.pause_reading_for(UPSTREAM_FULL)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.exchange is not None:
            self.exchange.downstream.resume_reading_for(UPSTREAM_FULL)

    # -- httptools callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.ended is not None:
            raise Unasked("a message after the response ended")

    def on_headers_complete(self) -> None:
        raw = self.pending
        # Answers from one upstream often repeat their head byte for byte (same status,
        # headers and length within the second of the Date header): it is read once, and
        # recognised by a compare rather than a search for its end.
        head = self.pool.last_head
        end = len(head.raw) if head is not None else 0
        if head is None or not raw.startswith(head.raw) or raw[end:end + 4] != b"\r\n\r\n":
            end = raw.find(b"\r\n\r\n")
            head = None
        status = self.parser.get_status_code()
        if status < 200 and status != 101:
            # An interim answer (103 Early Hints): the exchange decides whether to forward it.
            # httptools calls this for each 1xx, then waits for the next head.
            self.pending = raw[end + 4:]
            if self.exchange is not None:
                self.exchange.interim(status, raw[:end])
            return
        if status == 101 and self.exchange is not None and self.exchange.upgrade is None:
            # Tunnelled, the client's next requests would reach this upstream unrouted.
            raise Unasked("101 Switching Protocols to a request that asked for no upgrade")
        self.pending = b""
        if head is None:
            head = self.pool.last_head = ResponseHead(raw[:end])
            if head.keep_alive >= 0:
                self.pool.advertised(head.keep_alive)
        self.head = head
        if self.exchange is not None:
            self.exchange.response_head(status, head)

    def on_body(self, body: bytes) -> None:
        if self.exchange is not None:
            self.exchange.response_body(body)

    def on_message_complete(self) -> None:
        if self.head is not None and self.exchange is not None:
            self.ended = self.parser.should_keep_alive()

    # -- used by the pool and the exchange -------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.transport.write(data)

    def pause_reading(self) -> None:
        if not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()
            self.pool.lost(self)

    def abort(self) -> None:
        if self.transport is not None:
            self.closed = True
            self.transport.abort()
            self.pool.lost(self)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "active" if self.exchange else "idle"
        return f"<UpstreamConnection {self.pool.upstream.address} {state}>"
