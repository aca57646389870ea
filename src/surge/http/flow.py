"""A client connection's flow control, as both sides of the proxy drive it: reading from the
client is paused for one or more reasons at once and resumes when none is left; the upstream
side also collects what one of its reads makes the client get into one write (`out`).

Here, rather than in the gateway, so that `upstreams` can pause a client whose upstream is slow
without importing the gateway."""

from __future__ import annotations

import asyncio
from typing import Final

# Why reading from a client is paused: bits, each set and cleared by its own owner.
PIPELINE: Final = 1       # a pipelined request waits for the answers ahead of it
UPSTREAM_FULL: Final = 2  # the upstream connection's write buffer is full
HOLDING: Final = 4        # a request body is held while no upstream connection is ready
POLICY_WAIT: Final = 8    # a policy is waiting for a remote store
REFUSED: Final = 16       # a refusal waits for the answers ahead of it


class Downstream(asyncio.Protocol):
    """A client connection as the upstream side sees it (`gateway.client.ClientConnection` is
    the one kind): where answers are written, and reading paused by reason."""

    __slots__ = ("transport", "out", "paused", "closed")

    def __init__(self) -> None:
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # connection_made
        # While not None, writes are collected and sent as one: the upstream connection sets
        # it around each read, so a response head, body and last chunk cost one system call.
        self.out: list[bytes] | None = None
        self.paused = 0  # the reasons reading is paused for (bits, above)
        self.closed = False

    def pause_reading_for(self, reason: int) -> None:
        if not self.paused and not self.closed:
            self.transport.pause_reading()
        self.paused |= reason

    def resume_reading_for(self, reason: int) -> None:
        if self.paused & reason:
            self.paused &= ~reason
            if not self.paused and not self.closed:
                self.transport.resume_reading()
