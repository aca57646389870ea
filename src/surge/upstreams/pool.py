"""The keep-alive connection pool of one upstream. Deciding which connection serves which
request is synchronous (`acquire`, `release`, `lost`); only opening a connection awaits.

Safe reuse: a request that could not be replayed after losing a connection goes only on one used
within `reuse_within` (see `upstreams.idle_close`: learnt from the upstream's own idle closes),
never on one idle long enough to be closing; the sweeper closes those before the upstream does.

Limits: at most `max_connections` open or opening; requests beyond that wait in `waiters`,
bounded per service by `max_pending` (the service counts them); past it -> overload (503,
the `MAX_PENDING` problem)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING

from surge.observe.problem import MAX_PENDING, UPSTREAM_REMOVED
from surge.upstreams.connection import UpstreamConnection
from surge.upstreams.idle_close import IdleClose

if TYPE_CHECKING:
    from surge.http.headers import ResponseHead
    from surge.upstreams.caller import Caller
    from surge.upstreams.service import ServiceRuntime
    from surge.upstreams.upstream import Upstream


class Pool:
    __slots__ = (
        "upstream", "service", "loop", "max_connections", "idle", "conns", "connecting",
        "waiters", "closing", "last_head", "idle_close",
    )

    def __init__(self, upstream: Upstream, service: ServiceRuntime) -> None:
        self.upstream = upstream
        self.service = service
        self.loop = asyncio.get_running_loop()
        self.max_connections = service.spec.max_connections
        self.idle: list[UpstreamConnection] = []   # LIFO: the warmest connection first
        self.conns: set[UpstreamConnection] = set()
        self.connecting = 0
        self.waiters: deque[Caller] = deque()
        self.closing = False
        self.last_head: ResponseHead | None = None  # the head last read on this pool
        self.idle_close = IdleClose()  # compiled: its `reuse_within` is read on every request

    @property
    def size(self) -> int:
        return len(self.conns) + self.connecting

    def acquire(self, exchange: Caller, now: float) -> None:
        """Give `exchange` a connection now, or later through `exchange.attach`."""
        idle = self.idle
        while idle:
            conn = idle[-1]
            if conn.closed:
                idle.pop()
                continue
            if now - conn.idle_since < self.idle_close.reuse_within or exchange.replayable():
                idle.pop()
                exchange.attach(conn)
                return
            # The warmest is idle long enough to be closing (so are the rest), and this
            # request could not be replayed if it met that close: a new connection, for which
            # the stalest idle one makes room in a full pool.
            if self.size >= self.max_connections:
                idle[0].close()
            break
        if self.size < self.max_connections:
            self._open(exchange)
        elif self.service.pending >= self.service.spec.max_pending:
            exchange.overloaded(MAX_PENDING)
        else:
            self.service.pending += 1
            self.waiters.append(exchange)

    def release(self, conn: UpstreamConnection, now: float = 0.0) -> None:
        """A connection finished a response and may serve another."""
        conn.exchange = None
        conn.head = None
        if self.closing or conn.closed:
            conn.close()
            return
        if self.waiters:
            waiter = self._next_waiter()
            if waiter is not None:
                waiter.attach(conn)
                return
        conn.idle_since = now or time.monotonic()
        self.idle.append(conn)

    def lost(self, conn: UpstreamConnection) -> None:
        """A connection closed (either side); forget it, and let a waiter open a new one."""
        if conn in self.conns:
            self.conns.discard(conn)
            if conn in self.idle:
                self.idle.remove(conn)
            if self.waiters and not self.closing:
                waiter = self._next_waiter()
                if waiter is not None:
                    self._open(waiter)

    def closed_idle(self, conn: UpstreamConnection) -> None:
        """The upstream closed `conn` while it sat idle: learn when it does that."""
        now = time.monotonic()
        self.idle_close.closed_idle(now - conn.idle_since, now)

    def advertised(self, timeout: float) -> None:
        """A response said `Keep-Alive: timeout=<timeout>`."""
        self.idle_close.advertise(timeout)

    def sweep(self, now: float, idle_timeout: float) -> None:
        """Close connections idle for longer than `idle_timeout` or than the upstream keeps
        them (oldest sit at the bottom)."""
        limit = self.idle_close.review(now, idle_timeout)
        idle = self.idle
        while idle and now - idle[0].idle_since > limit:
            idle.pop(0).close()

    def close(self) -> None:
        """Stop pooling: idle connections close now, busy ones when their response ends."""
        self.closing = True
        for conn in list(self.idle):
            conn.close()
        while self.waiters:
            waiter = self._next_waiter()
            if waiter is not None:
                waiter.overloaded(UPSTREAM_REMOVED)

    def _next_waiter(self) -> Caller | None:
        while self.waiters:
            waiter = self.waiters.popleft()
            self.service.pending -= 1
            if not waiter.cancelled:
                return waiter
        return None

    def _open(self, exchange: Caller) -> None:
        self.connecting += 1
        self.loop.create_task(self._connect(exchange))

    async def _connect(self, exchange: Caller) -> None:
        up = self.upstream
        try:
            _, conn = await asyncio.wait_for(
                self.loop.create_connection(lambda: UpstreamConnection(self), up.host, up.port),
                self.service.connect_timeout,
            )
        except (TimeoutError, OSError) as exc:
            self.connecting -= 1
            exchange.connect_failed(exc)
            return
        self.connecting -= 1
        self.conns.add(conn)
        if exchange.cancelled:
            self.release(conn)
        else:
            exchange.attach(conn)

    def __repr__(self) -> str:
        return (
            f"<Pool {self.upstream.address} [Connections: {len(self.conns)} open, "
            f"{len(self.idle)} idle, {self.connecting} opening; Requests: "
            f"{len(self.waiters)} queued; reuse within {self.idle_close.reuse_within:g}s]>"
        )
