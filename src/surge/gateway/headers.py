"""Header rules of the proxy step: which headers are hop-by-hop, how request ids are made and
checked, and how heads are framed. Pure and allocation-light: this runs for every request."""

from __future__ import annotations

import itertools
import os
import re

# Hop-by-hop headers (RFC 9110 7.6.1) plus the legacy ones proxies also drop.
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
    b"transfer-encoding", b"upgrade", b"proxy-authenticate", b"proxy-authorization",
})

_REQUEST_ID_OK = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")
_PREFIX = os.urandom(6).hex().encode()
_counter = itertools.count(1)


def new_request_id() -> bytes:
    """Unique per process and cheap: a random process prefix and a counter."""
    return b"%s-%x" % (_PREFIX, next(_counter))


def valid_request_id(value: bytes) -> bool:
    return _REQUEST_ID_OK.match(value) is not None


def connection_tokens(value: bytes) -> set[bytes]:
    """The lower-cased tokens of a Connection header (`keep-alive, Upgrade`)."""
    return {token.strip().lower() for token in value.split(b",") if token.strip()}


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"


# Response heads are filtered as bytes with a few C-level calls (one case-insensitive regex
# substitution cuts every hop-by-hop line) instead of one Python callback per header. llhttp
# has already refused a space before a colon.
_HOP_LINE = re.compile(
    rb"\r\n(?:connection|keep-alive|proxy-connection|te|trailer|transfer-encoding|upgrade|"
    rb"proxy-authenticate|proxy-authorization):[^\r]*", re.IGNORECASE)
_UPGRADE_LINE = re.compile(rb"\r\n(?:connection|upgrade):[^\r]*", re.IGNORECASE)
_PLAIN_TOKENS = frozenset({b"keep-alive", b"close", b"upgrade"})


class ResponseHead:
    """An upstream's response head, ready to be re-sent: `block` holds the end-to-end header
    lines, each preceded by CRLF; `length` is -1 without Content-Length."""

    __slots__ = ("reason", "block", "length", "chunked", "raw")

    def __init__(self, raw: bytes) -> None:
        first = raw.find(b"\r\n")
        if first < 0:
            first = len(raw)
        parts = raw[:first].split(b" ", 2)
        self.reason = parts[2] if len(parts) > 2 else b""
        self.raw = block = raw[first:]
        low = block.lower()
        at = low.find(b"\r\ncontent-length:")
        if at < 0:
            self.length = -1
        else:
            end = low.find(b"\r\n", at + 17)
            value = low[at + 17:end if end >= 0 else len(low)].strip()
            self.length = int(value) if value.isdigit() else -1
        self.chunked = low.find(b"\r\ntransfer-encoding:") >= 0
        block = _HOP_LINE.sub(b"", block)
        at = low.find(b"\r\nconnection:")
        while at >= 0:
            end = low.find(b"\r\n", at + 2)
            value = low[at + 13:end if end >= 0 else len(low)].strip()
            if value not in _PLAIN_TOKENS:  # Connection names more hop-by-hop headers
                for name in connection_tokens(value) - _PLAIN_TOKENS:
                    block = re.sub(rb"\r\n" + re.escape(name) + rb":[^\r]*", b"", block,
                                   flags=re.IGNORECASE)
            at = low.find(b"\r\nconnection:", at + 2)
        self.block = block

    def upgrade_lines(self) -> bytes:
        """The Connection and Upgrade lines, forwarded only with a 101 answer."""
        return b"".join(_UPGRADE_LINE.findall(self.raw))
