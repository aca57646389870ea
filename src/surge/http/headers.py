"""Header rules both sides of the proxy share: which headers are hop-by-hop, how a response
head is read and re-sent, how a chunked body is framed. Pure and allocation-light: this runs
for every request. (Request ids are the gateway's: `gateway/request_ids.py`.)"""

from __future__ import annotations

import re
import time
from email.utils import formatdate
from typing import Final

# Hop-by-hop headers (RFC 9110 7.6.1) plus the legacy ones proxies also drop.
HOP_BY_HOP: Final = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
    b"transfer-encoding", b"upgrade", b"proxy-authenticate", b"proxy-authorization",
})


def connection_tokens(value: bytes) -> set[bytes]:
    """The lower-cased tokens of a Connection header (`keep-alive, Upgrade`)."""
    return {token.strip().lower() for token in value.split(b",") if token.strip()}


def keep_alive_timeout(value: bytes) -> float:
    """The `timeout=N` of a lower-cased Keep-Alive header value (`timeout=5, max=100`), in
    seconds; -1.0 without a valid one."""
    for param in value.split(b","):
        name, _, number = param.partition(b"=")
        number = number.strip()
        if name.strip() == b"timeout" and number.isdigit():
            return float(int(number))
    return -1.0


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK: Final = b"0\r\n\r\n"


class HttpDate:
    """The `Date` line of the current second (RFC 9110 6.6.1: a proxy adds one to a response
    without it, a server to its own answers), formatted once per second, not per response.
    The gateway's sweeper ticks it (every 0.1 s), so the data path only reads `line`; other
    callers (the admin API, problem answers) tick it themselves."""

    __slots__ = ("second", "line")

    def __init__(self) -> None:
        self.second = -1
        self.line = b""
        self.tick(time.time())

    def tick(self, now: float) -> bytes:
        second = int(now)
        if second != self.second:
            self.second = second
            self.line = b"Date: %s\r\n" % formatdate(second, usegmt=True).encode()
        return self.line


DATE: Final = HttpDate()


def origin_form(target: bytes, host: bytes | None) -> bytes | None:
    """The origin-form of an absolute-form request target (`http://h/p?q` -> `/p?q`, RFC 9112
    3.2.2), or None when its authority is not the request's Host: a target naming another
    host than the one the request is routed by would let a client say two things at once.
    Compared without case and with the default port dropped (`http://h:80/` is `Host: h`)."""
    if host is None or target[:7].lower() != b"http://":
        return None
    end = len(target)
    for stop in (b"/", b"?"):
        at = target.find(stop, 7)
        if 0 <= at < end:
            end = at
    if _default_port(target[7:end].lower()) != _default_port(host.lower()):
        return None
    rest = target[end:]
    return rest if rest[:1] == b"/" else b"/" + rest


def _default_port(authority: bytes) -> bytes:
    """`h:80` and `h:` are `h` (RFC 3986 6.2.3)."""
    if authority.endswith(b":80"):
        return authority[:-3]
    return authority[:-1] if authority.endswith(b":") else authority


# Response heads are read as bytes with a few C-level calls: one pass of a regex over the
# lower-cased head finds the lines the gateway acts on (framing and hop-by-hop), and the block
# is cut around them, instead of one Python callback per header. llhttp has already checked
# the head's grammar (no space before a colon, no bare CR or LF).
_RESPONSE_SPECIAL: Final = re.compile(
    rb"\r\n(content-length|transfer-encoding|connection|keep-alive|proxy-connection|te|"
    rb"trailer|upgrade|proxy-authenticate|proxy-authorization|date):[ \t]*([^\r]*)")
_UPGRADE_LINE: Final = re.compile(rb"\r\n(?:connection|upgrade):[^\r]*", re.IGNORECASE)
_PLAIN_TOKENS: Final = frozenset({b"keep-alive", b"close", b"upgrade"})


class ResponseHead:
    """An upstream's response head, ready to be re-sent: `block` holds the end-to-end header
    lines, each preceded by CRLF; `length` is -1 without Content-Length; `dated` says whether
    the upstream sent a Date (found in the same pass, so checking costs no second scan);
    `keep_alive` is the `Keep-Alive: timeout=` in seconds, -1 without one."""

    __slots__ = ("reason", "block", "length", "chunked", "raw", "start", "dated", "keep_alive")

    def __init__(self, raw: bytes) -> None:
        low = raw.lower()
        first = low.find(b"\r\n")
        if first < 0:
            first = len(raw)
        parts = raw[:first].split(b" ", 2)
        self.reason = parts[2] if len(parts) > 2 else b""
        self.raw = raw
        self.start = b""
        self.length = -1
        self.chunked = False
        self.dated = False
        self.keep_alive = -1.0
        cuts: list[int] = []
        named: set[bytes] | None = None
        for found in _RESPONSE_SPECIAL.finditer(low, first):
            name = found[1]
            if name == b"content-length":
                value = found[2].rstrip(b" \t")
                if value.isdigit():
                    self.length = int(value)
                continue
            if name == b"date":
                self.dated = True
                continue
            cuts += found.span()
            if name == b"transfer-encoding":
                self.chunked = True
            elif name == b"keep-alive":
                self.keep_alive = keep_alive_timeout(found[2])
            elif name == b"connection":
                value = found[2].rstrip(b" \t")
                if value not in _PLAIN_TOKENS:  # Connection names more hop-by-hop headers
                    named = (named or set()) | (connection_tokens(value) - _PLAIN_TOKENS)
        if not cuts:
            self.block = raw[first:]
            return
        pieces = [raw[first:cuts[0]]]
        for at in range(1, len(cuts) - 1, 2):
            pieces.append(raw[cuts[at]:cuts[at + 1]])
        pieces.append(raw[cuts[-1]:])
        block = b"".join(pieces)
        if named:
            for name in named:
                block = re.sub(rb"\r\n" + re.escape(name) + rb":[^\r]*", b"", block,
                               flags=re.IGNORECASE)
        self.block = block

    def status_line(self, status: int) -> bytes:
        """The head as the client gets it, up to the value of the X-Request-ID line the
        gateway adds; made once per head (heads are reused, see `Pool.last_head`)."""
        start = self.start
        if not start:
            start = self.start = (b"HTTP/1.1 %d %s%s\r\nX-Request-ID: "
                                  % (status, self.reason, self.block))
        return start

    def upgrade_lines(self) -> bytes:
        """The Connection and Upgrade lines, forwarded only with a 101 answer."""
        return b"".join(_UPGRADE_LINE.findall(self.raw))
