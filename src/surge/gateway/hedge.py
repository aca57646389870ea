"""Hedged requests (a route's `hedge`): when an idempotent request has no response head after
the route's hedge delay, one more copy goes to another upstream; the first answer to begin
wins, and the other copy is cancelled. A hedge is paid from the service's retry budget.

`HedgeLeg` is the second copy: towards its pool and its upstream connection it stands in for
the exchange (the same callbacks) until an answer begins, and then hands over."""

from __future__ import annotations

from typing import TYPE_CHECKING

from surge.gateway import recovery
from surge.observe import problem as p
from surge.upstreams.caller import Caller

if TYPE_CHECKING:
    from surge.gateway.exchange import Exchange
    from surge.http.headers import ResponseHead
    from surge.observe.problem import Problem
    from surge.upstreams.connection import UpstreamConnection
    from surge.upstreams.upstream import Upstream

# The delay used with `delay: p95` until the route has answered this many requests.
P95_SAMPLES = 20
P95_FALLBACK = 0.1


class HedgeLeg(Caller):
    __slots__ = ("ex", "upstream", "conn")  # `upgrade` stays None: a hedge never asks for one

    def __init__(self, ex: Exchange, upstream: Upstream) -> None:
        self.ex = ex
        self.upstream = upstream
        self.conn: UpstreamConnection | None = None
        self.cancelled = False
        self.downstream = ex.client  # the connection batches the client's writes through it

    # -- the pool's side -------------------------------------------------------------------------

    def attach(self, conn: UpstreamConnection) -> None:
        if self.cancelled:
            conn.pool.release(conn)
            return
        self.conn = conn
        conn.exchange = self  # stands in for the exchange until it answers
        ex = self.ex
        conn.transport.write(ex.head + b"".join(ex.body) if ex.body else ex.head)

    def replayable(self) -> bool:
        return True  # only a replayable request is hedged, and the exchange still holds it

    def connect_failed(self, exc: BaseException) -> None:
        self.drop(False)

    def overloaded(self, problem: Problem) -> None:
        self.drop(None)

    # -- the connection's side -------------------------------------------------------------------

    def response_head(self, status: int, head: ResponseHead) -> None:
        self.ex.hedge_answered(self, status, head)

    def interim(self, status: int, raw: bytes) -> None:
        if self.ex.forwards_interim(status):
            self.ex.hedge_informed(self, status, raw)

    # A leg hands its connection to the exchange at the response head, and never asks for an
    # upgrade: what follows a head is the exchange's.
    def response_body(self, data: bytes) -> None:
        raise AssertionError("a hedge leg got a response body after its head")

    def response_end(self, conn: UpstreamConnection, upstream_keep_alive: bool) -> None:
        raise AssertionError("a hedge leg got a response end after its head")

    def upstream_upgraded(self, rest: bytes) -> None:
        raise AssertionError("a hedge leg got an upgrade it never asked for")

    def upstream_lost(self, conn: UpstreamConnection, exc: Exception | None) -> None:
        self.conn = None
        self.drop(False)

    def upstream_broken(self, detail: str) -> None:
        self.drop(False)

    # -- endings ---------------------------------------------------------------------------------

    def drop(self, ok: bool | None) -> None:
        """Give up this copy (its upstream failed, or the other copy answered first)."""
        ex = self.ex
        if ex.hedge is self:
            ex.hedge = None
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.exchange = None
            conn.abort()
        if self.cancelled:
            return
        self.cancelled = True
        self.upstream.inflight -= 1
        if ok is not None:
            ex.service.record(self.upstream, ok, ex.client.gw.now())
        if not ex.holding and not ex.status and not ex.cancelled and not ex.responded:
            # The first copy had already failed and was waiting for this one.
            recovery.retry_or_fail(ex, p.UPSTREAM_RESET, "no upstream answered the request",
                                   replay_safe=recovery.replayable(ex))


def p95(buckets: list[int], bounds: tuple[float, ...]) -> float:
    """The upper bound of the bucket holding the 95th percentile of a duration histogram."""
    total = sum(buckets)
    if total < P95_SAMPLES:
        return P95_FALLBACK
    seen = 0
    for bound, count in zip(bounds, buckets, strict=False):
        seen += count
        if seen >= 0.95 * total:
            return bound
    return bounds[-1]
