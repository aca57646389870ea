"""`Caller`: what waits on a pool for a connection and then hears the response on it: the
gateway's exchange, or a hedge's second copy standing in for it until an answer begins. The
pool and the connection know their callers only through this class, never the gateway's.

A native base class rather than a Protocol: compiled, a call through it is a direct call
through the class's method table, where a Protocol's would be a lookup by name."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from surge.http.flow import Downstream
    from surge.http.headers import ResponseHead
    from surge.observe.problem import Problem
    from surge.upstreams.connection import UpstreamConnection


class Caller:
    upgrade: bytes | None = None  # the Upgrade the request asks for, if any
    cancelled = False             # given up: a connection that comes later goes back
    # The client connection the answer goes to (set by each subclass).
    downstream: Downstream

    # -- the pool's side -------------------------------------------------------------------------

    def attach(self, conn: UpstreamConnection) -> None:
        """`conn` is this caller's: send the request on it."""
        raise NotImplementedError

    def replayable(self) -> bool:
        """Whether the request could be sent again if lost on its way up: then it may take a
        connection idle long enough to be closing."""
        raise NotImplementedError

    def connect_failed(self, exc: BaseException) -> None:
        raise NotImplementedError

    def overloaded(self, problem: Problem) -> None:
        """No connection will come: the pool is full, or closing (`problem` says which)."""
        raise NotImplementedError

    # -- the connection's side -------------------------------------------------------------------

    def interim(self, status: int, raw: bytes) -> None:
        """A 1xx answer before the final one (103 Early Hints)."""
        raise NotImplementedError

    def response_head(self, status: int, head: ResponseHead) -> None:
        raise NotImplementedError

    def response_body(self, data: bytes) -> None:
        raise NotImplementedError

    def response_end(self, conn: UpstreamConnection, upstream_keep_alive: bool) -> None:
        raise NotImplementedError

    def upstream_upgraded(self, rest: bytes) -> None:
        raise NotImplementedError

    def upstream_lost(self, conn: UpstreamConnection, exc: Exception | None) -> None:
        raise NotImplementedError

    def upstream_broken(self, detail: str) -> None:
        raise NotImplementedError
