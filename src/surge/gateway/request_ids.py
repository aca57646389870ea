"""The X-Request-ID the gateway gives each request: made unique per process, or taken from the
client when it is well-formed. Pure and allocation-light: this runs for every request."""

from __future__ import annotations

import os
import re
from typing import Final

_REQUEST_ID_OK: Final = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")


class RequestIds:
    """Unique per process and cheap: a random process prefix and a counter (an attribute,
    so compiled it is a native int; the id is one %-formatted bytes, one allocation)."""

    def __init__(self) -> None:
        self.prefix = os.urandom(6).hex().encode()
        self.count = 0

    def new(self) -> bytes:
        self.count += 1
        return b"%s-%d" % (self.prefix, self.count)


REQUEST_IDS: Final = RequestIds()


def valid_request_id(value: bytes) -> bool:
    return _REQUEST_ID_OK.match(value) is not None
