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
