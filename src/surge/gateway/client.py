"""The listener side of one client connection: HTTP/1.1 parsing with httptools, the limits on
request heads, pipelining (requests answered strictly in order), the client's deadlines and
flow control. Each parsed request becomes an `Exchange`, which does the proxying.

llhttp (strict) refuses most request-smuggling vectors itself: both Content-Length and
Transfer-Encoding, repeated lengths, bad chunk framing, bare CR or LF, obs-fold, NUL. The few
checks it does not make (codings before `chunked`, chunked HTTP/1.0, CONNECT, versions, Host,
head limits) are made here, by raising `Refused` from a callback so the parser stops at once."""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from typing import TYPE_CHECKING, Final

import httptools

from surge.gateway.exchange import Exchange
from surge.gateway.request_ids import valid_request_id
from surge.http.flow import PIPELINE, REFUSED, Downstream
from surge.http.headers import connection_tokens
from surge.observe import problem as p
from surge.observe.problem import Problem, problem_document, problem_response

if TYPE_CHECKING:
    from surge.gateway.server import GatewayServer
    from surge.upstreams.connection import UpstreamConnection

log: Final = logging.getLogger("surge.gateway")

# Deadline kinds.
NONE: Final = 0
HEADER: Final = 1
IDLE: Final = 2

_DROPPED: Final = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"upgrade",
    b"transfer-encoding", b"content-length", b"expect", b"x-forwarded-proto",
    b"x-forwarded-host", b"x-forwarded-for", b"x-request-id", b"proxy-authorization",
})

_CLOSE: Final = frozenset({b"close"})


# Limits on one request head that no deployment needs to raise: far above what browsers and
# HTTP clients send, far below what lets one client pin much parser state. Within them,
# `max_header_bytes` (configurable) still bounds the head as a whole.
MAX_HEADERS: Final = 100        # header lines in one request -> 431
MAX_HEADER_LINE: Final = 8192   # bytes in one header line, name and value -> 431
MAX_TARGET: Final = 8192        # bytes in the request target -> 414

# RFC 9112 3.2: a Host is a uri-host (reg-name or IP literal) and an optional port.
_HOST: Final = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(?::[0-9]*)?")


class Refused(Exception):
    """Raised from a parser callback with `reject`'s arguments (problem, detail); answered
    outside the parser, which stops, so nothing after it is read."""


class ClientConnection(Downstream):
    __slots__ = (
        "gw", "parser", "ip", "current", "receiving", "queue", "write_paused", "deadline",
        "deadline_kind", "head_seen", "tunnel", "upgrade_buf", "head_lines", "refusal",
        "host_ok",
    )

    def __init__(self, gw: GatewayServer) -> None:
        super().__init__()
        self.gw = gw
        self.parser = httptools.HttpRequestParser(self)
        self.ip = b"-"
        self.current: Exchange | None = None
        # The request being parsed; parser callbacks other than on_message_begin only run
        # between it and on_message_complete, while it is set.
        self.receiving: Exchange | None = None
        self.queue: deque[Exchange] = deque()
        self.write_paused = False
        self.deadline = 0.0
        self.deadline_kind = NONE
        self.head_seen = 0
        self.head_lines = 0
        self.tunnel: asyncio.Transport | None = None
        self.upgrade_buf: list[bytes] | None = None
        # A refusal (problem, detail, exchange) waiting for the answers ahead of it.
        self.refusal: tuple[Problem, str, Exchange | None] | None = None
        self.host_ok = b""  # the last Host header found valid on this connection

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if peer:
            self.ip = peer[0].encode()
        gw = self.gw
        gw.connections.add(self)
        self.deadline_kind = HEADER
        self.deadline = gw.now() + gw.client_header_timeout

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.write(data)
            return
        if self.upgrade_buf is not None:
            self.upgrade_buf.append(data)
            return
        if self.deadline_kind == HEADER and self.receiving is not None:
            self.head_seen += len(data)
            if self.head_seen > self.gw.max_header_bytes + 65536:
                self.reject(p.HEADER_TOO_LARGE, "request head is too large")
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.upgrade_buf = [data[upgrade.args[0]:]]
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, Refused):
                self.reject(*cause.args)
            elif isinstance(cause, ValueError):
                self.reject(p.BAD_REQUEST, f"malformed request: {cause}")
            else:
                log.error("internal error while handling a request", exc_info=cause)
                self.reject(p.INTERNAL, "internal error")
        except httptools.HttpParserError as exc:
            self.reject(p.BAD_REQUEST, f"malformed request: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.gw.connections.discard(self)
        if self.tunnel is not None:
            self.tunnel.close()
        current = self.current
        if current is not None:
            self.current = None
            current.cancel()
        for waiting in self.queue:
            waiting.cancel()
        self.queue.clear()

    def pause_writing(self) -> None:
        self.write_paused = True
        current = self.current
        if current is not None and current.conn is not None:
            current.conn.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        current = self.current
        if current is not None and current.conn is not None:
            current.conn.resume_reading()

    # -- httptools callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        gw = self.gw
        now = gw.now()
        self.receiving = Exchange(self, now)
        self.head_seen = 0
        self.head_lines = 0
        if self.deadline_kind != HEADER:
            self.deadline_kind = HEADER
            self.deadline = now + gw.client_header_timeout

    def on_url(self, url: bytes) -> None:
        ex: Exchange = self.receiving  # type: ignore[assignment]  # see `receiving`
        ex.target += url
        self.head_seen += len(url)
        if len(ex.target) > MAX_TARGET:
            raise Refused(p.URL_TOO_LONG, f"request target is over {MAX_TARGET} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        line = len(name) + len(value) + 2
        self.head_seen += line + 2
        self.head_lines += 1
        if self.head_seen > self.gw.max_header_bytes:
            raise Refused(p.HEADER_TOO_LARGE, "request head is over the limit of "
                          f"{self.gw.max_header_bytes} bytes")
        if line > MAX_HEADER_LINE or self.head_lines > MAX_HEADERS:
            raise Refused(p.HEADER_TOO_LARGE,
                          f"over {MAX_HEADERS} header lines or a line over {MAX_HEADER_LINE} bytes")
        lname = name.lower()
        ex: Exchange = self.receiving  # type: ignore[assignment]  # see `receiving`
        if lname in _DROPPED:
            if lname == b"content-length":
                ex.length = int(value)
            elif lname == b"transfer-encoding":
                # llhttp refuses a final coding other than chunked only after
                # on_headers_complete (too late: the request would be on its way), and lets
                # codings before chunked through, to reach the upstream decoded by nobody.
                codings = value.lower().split(b",")
                if codings[-1].strip(b" \t") != b"chunked":
                    raise Refused(p.BAD_REQUEST,   # RFC 9112 6.3
                                  "Transfer-Encoding must end with chunked")
                if len(codings) > 1:
                    raise Refused(p.UNSUPPORTED_TRANSFER_CODING, "only the chunked "
                                  "transfer coding is supported")
                ex.chunked = True
            elif lname == b"x-forwarded-for":
                ex.xff = value
            elif lname == b"x-request-id":
                if valid_request_id(value):
                    ex.request_id = value
            elif lname == b"expect":
                ex.expect = value.lower() == b"100-continue"
            elif lname == b"upgrade":
                ex.upgrade = value
            elif lname == b"connection":
                named = connection_tokens(value) - _DROPPED - _CLOSE
                if named:
                    ex.hop = frozenset(named).union(ex.hop or ())
            return
        if lname == b"host":
            if ex.host is not None or (value != self.host_ok and not _HOST.fullmatch(value)):
                raise Refused(p.INVALID_HOST, "a request needs one valid Host header")
            ex.host = self.host_ok = value  # a connection's requests name the same host
        elif lname == b"cookie":
            ex.cookie = value
        elif lname == b"idempotency-key":
            ex.idempotency_key = True
        ex.headers.append((name, value))

    def on_headers_complete(self) -> None:
        ex: Exchange = self.receiving  # type: ignore[assignment]  # see `receiving`
        parser = self.parser
        ex.method = parser.get_method()
        version = parser.get_http_version()
        ex.http11 = version == "1.1"
        ex.keep_alive = parser.should_keep_alive()
        if ex.upgrade is not None:
            if not parser.should_upgrade():
                ex.upgrade = None
            elif ex.upgrade.lower() != b"websocket":
                # Only WebSocket is tunnelled: an h2c tunnel would carry requests past routes
                # and policies. Served plainly; the parser is past an upgrade, so it closes.
                ex.upgrade = None
                ex.keep_alive = False
        if not ex.http11 and version != "1.0":
            raise Refused(p.HTTP_VERSION,
                          f"HTTP/{version} is not served here; HTTP/1.1 and HTTP/1.0 are")
        if ex.host is None and ex.http11:
            raise Refused(p.MISSING_HOST, "an HTTP/1.1 request needs a Host header")
        if ex.chunked and not ex.http11:
            # RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
            raise Refused(p.BAD_REQUEST, "Transfer-Encoding in an HTTP/1.0 request")
        if ex.method == b"CONNECT":
            raise Refused(p.METHOD_NOT_IMPLEMENTED, "CONNECT is not served by a reverse proxy")
        self.deadline_kind = NONE
        if self.current is None:
            self.current = ex
            ex.start()
        else:
            self.queue.append(ex)
            self.pause_reading_for(PIPELINE)

    def on_body(self, body: bytes) -> None:
        self.receiving.request_body(body)  # type: ignore[union-attr]  # see `receiving`

    def on_message_complete(self) -> None:
        ex: Exchange = self.receiving  # type: ignore[assignment]  # see `receiving`
        self.receiving = None
        ex.request_end()

    # -- used by exchanges -----------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        out = self.out
        if out is None:
            self.transport.write(data)
        else:
            out.append(data)

    def flush(self) -> None:
        out, self.out = self.out, None
        if out:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def exchange_done(self, ex: Exchange, now: float) -> None:
        """`ex` is answered and its request read: move on to the next request."""
        if self.current is not ex:
            return
        self.current = None
        ex.release_slot()
        if not ex.keep_alive or self.gw.draining or self.closed:
            self.close()
            return
        if self.queue:
            nxt = self.queue.popleft()
            if not self.queue:
                self.resume_reading_for(PIPELINE)
            self.current = nxt
            nxt.start()
        elif self.refusal is not None:
            self.refuse(*self.refusal)
        elif self.receiving is None:
            self.deadline_kind = IDLE
            self.deadline = now + self.gw.idle_timeout

    def start_tunnel(self, conn: UpstreamConnection) -> None:
        self.tunnel = conn.transport
        self.deadline_kind = NONE
        buffered, self.upgrade_buf = self.upgrade_buf or [], None
        for data in buffered:
            if data:
                conn.send(data)

    def deadline_passed(self) -> None:
        """Called by the gateway's sweeper when `deadline` is behind us."""
        kind, self.deadline_kind = self.deadline_kind, NONE
        if kind == HEADER:
            if self.current is None:
                self.reject(p.CLIENT_HEADER_TIMEOUT, "request head not received within "
                            f"{self.gw.client_header_timeout:g}s")
            else:
                self.abort()
        elif kind == IDLE:
            self.close()

    def reject(self, problem: Problem, detail: str) -> None:
        """Answer a request that cannot be parsed or accepted, then close. Behind pipelined
        requests still being answered, the refusal waits its turn (an earlier request must
        not get it as its answer) and nothing more is read."""
        self.gw.stats.failed[problem.reason] += 1
        current, refused = self.current, self.receiving
        if current is not None and current is not refused:
            if refused is not None and refused in self.queue:
                self.queue.remove(refused)   # its body is broken: it must never start
            self.refusal = (problem, detail, refused)
            self.receiving = None
            self.deadline_kind = NONE
            self.pause_reading_for(REFUSED)
            return
        if current is not None and current.status:
            self.abort()  # a response is under way: it cannot be replaced by an error
            return
        self.refuse(problem, detail, refused)

    def refuse(self, problem: Problem, detail: str, ex: Exchange | None) -> None:
        body = problem_document(problem, detail)
        self.write(problem_response(problem, body, close=True))
        status = problem.status
        gw = self.gw
        gw.stats.unrouted[status // 100] += 1
        if gw.access_log is not None:
            ex = ex or Exchange(self, gw.now())
            ex.status = status
            gw.access_log.write(ex, gw.now() - ex.started)
        self.close()
        self.closed = True

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.abort()

    def drain(self) -> None:
        """Shutting down: an idle connection closes now, a busy one after its response."""
        if self.current is None and self.receiving is None:
            self.close()

