"""Safe reuse of pooled connections (pure, no sockets): when an upstream closes idle connections
(`IdleClose`), and which pooled connection a request may take (`Pool.acquire`, with `now`).
The real race against uvicorn is `tests/gateway/test_idle_race.py`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from surge.config import parse
from surge.gateway.client import ClientConnection
from surge.gateway.exchange import Exchange
from surge.gateway.server import GatewayServer
from surge.http.headers import ResponseHead, keep_alive_timeout
from surge.upstreams.connection import UpstreamConnection
from surge.upstreams.idle_close import (
    NEVER,
    RELEARN_AFTER,
    UNKNOWN_REUSE,
    IdleClose,
    margin,
)
from surge.upstreams.pool import Pool

GATEWAY_IDLE = 75.0


# -- the estimate ----------------------------------------------------------------------------------

def test_before_anything_is_known_only_a_connection_used_within_a_second_is_reused():
    close = IdleClose()
    assert close.reuse_within == UNKNOWN_REUSE == 1.0
    assert close.review(0.0, GATEWAY_IDLE) == GATEWAY_IDLE  # so the upstream can show its close


def test_the_margin_is_a_second_or_a_fifth_whichever_is_more():
    assert margin(2.0) == 1.0
    assert margin(5.0) == 1.0
    assert margin(75.0) == 15.0


def test_the_shortest_observed_idle_close_less_the_margin_bounds_reuse():
    close = IdleClose()
    close.closed_idle(4.02, now=100.0)   # a 4 s keep-alive, noticed a little late
    close.closed_idle(4.4, now=101.0)
    assert close.reuse_within == 4.02 - 1.0
    close.closed_idle(4.01, now=102.0)
    assert close.reuse_within == 4.01 - 1.0
    close.closed_idle(10.0, now=103.0)
    assert close.reuse_within == 4.01 - 1.0


def test_pooled_connections_are_closed_before_the_upstream_would():
    close = IdleClose()
    close.closed_idle(5.0, now=100.0)
    assert close.review(100.1, GATEWAY_IDLE) == 4.0
    assert close.review(100.1, 3.0) == 3.0      # the gateway's own limit, if shorter


def test_an_upstream_that_closes_within_the_margin_is_never_reused_for_what_cannot_be_replayed():
    close = IdleClose()
    close.closed_idle(0.05, now=1.0)
    assert close.reuse_within < 0
    assert close.review(1.0, GATEWAY_IDLE) == 0.0


def test_an_advertised_keep_alive_timeout_is_honoured_and_an_earlier_observed_close_wins():
    close = IdleClose()
    close.advertise(5.0)
    assert close.reuse_within == 4.0
    assert close.review(0.0, GATEWAY_IDLE) == 4.0
    close.closed_idle(3.0, now=1.0)   # it says 10 s but closes after 3
    assert close.reuse_within == 2.0


def test_after_a_while_the_upstream_may_show_its_close_again_and_the_next_one_replaces_it():
    # A restart closes idle connections at any age: that figure must not stay forever.
    close = IdleClose()
    close.closed_idle(0.3, now=10.0)
    later = 10.0 + RELEARN_AFTER + 1
    assert close.review(later, GATEWAY_IDLE) == GATEWAY_IDLE
    assert close.reuse_within == 0.3 - 1.0  # erring short is safe until it is seen again
    close.closed_idle(4.02, now=later + 5)
    assert close.reuse_within == 4.02 - 1.0
    assert close.review(later + 5, GATEWAY_IDLE) == 4.02 - 1.0


def test_a_stale_observation_gives_way_to_an_advertised_timeout():
    close = IdleClose()
    close.advertise(5.0)
    close.closed_idle(0.3, now=10.0)
    assert close.reuse_within < 0
    assert close.review(10.0 + RELEARN_AFTER + 1, GATEWAY_IDLE) == 4.0
    assert close.reuse_within == 4.0


def test_the_keep_alive_header_is_read_once_per_head():
    assert keep_alive_timeout(b"timeout=5, max=100") == 5.0
    assert keep_alive_timeout(b"max=100,timeout = 7") == 7.0
    assert keep_alive_timeout(b"timeout=soon") == -1.0
    head = ResponseHead(b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5, max=100\r\nA: 1")
    assert head.keep_alive == 5.0 and head.block == b"\r\nA: 1"
    assert ResponseHead(b"HTTP/1.1 200 OK\r\nA: 1").keep_alive == -1.0


# -- which connection a request takes --------------------------------------------------------------
# Real exchanges on in-memory transports (compiled, the pool accepts nothing else).

CONFIG = """
gateway: {listen: "127.0.0.1:18999", access_log: "off"}
services:
  app: {upstreams: ["127.0.0.1:1"], max_connections: %d}
routes: [{prefix: /, service: app}]
"""


class Transport(asyncio.Transport):
    """Takes writes; nothing reaches a kernel."""

    def write(self, data: bytes) -> None:  # type: ignore[override]
        pass

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


NewRequest = Callable[[bytes], Exchange]


def _with_pool(test: Callable[[Pool, NewRequest], None], max_connections: int = 10) -> None:
    """Run `test(pool, request)`, `request(method)` making an exchange, with the pool of an
    upstream on port 1: a connection it opens is counted in `pool.connecting` at once (the
    task that would open it never runs)."""
    async def run() -> None:
        gateway = GatewayServer(parse(CONFIG % max_connections))
        service = gateway.snapshot.services["app"]
        client = ClientConnection(gateway)
        client.connection_made(Transport())

        def request(method: bytes) -> Exchange:
            ex = Exchange(client, 0.0)
            ex.method = method
            ex.service = service
            return ex

        test(next(iter(service.upstreams.values())).pool, request)

    asyncio.run(run())


def _idle(pool: Pool, since: float) -> UpstreamConnection:
    conn = UpstreamConnection(pool)
    conn.connection_made(Transport())
    pool.conns.add(conn)
    conn.idle_since = since
    pool.idle.append(conn)
    return conn


def test_a_post_takes_a_connection_used_a_moment_ago():
    def check(pool: Pool, request: NewRequest) -> None:
        conn = _idle(pool, since=100.0)
        post = request(b"POST")
        pool.acquire(post, now=100.5)
        assert post.conn is conn and pool.connecting == 0

    _with_pool(check)


def test_a_post_opens_a_new_connection_rather_than_take_one_that_may_be_closing():
    def check(pool: Pool, request: NewRequest) -> None:
        conn = _idle(pool, since=100.0)
        post = request(b"POST")
        pool.acquire(post, now=100.0 + UNKNOWN_REUSE)
        assert post.conn is None and pool.connecting == 1
        assert pool.idle == [conn]  # kept: what can be replayed may still use it

    _with_pool(check)


def test_a_replayable_request_takes_any_idle_connection():
    def check(pool: Pool, request: NewRequest) -> None:
        for method, keyed in ((b"GET", False), (b"POST", True)):
            conn = _idle(pool, since=100.0)
            ex = request(method)
            ex.idempotency_key = keyed
            pool.acquire(ex, now=104.0)
            assert ex.conn is conn and pool.connecting == 0

    _with_pool(check)


def test_a_body_that_may_outgrow_the_replay_buffer_makes_a_request_unreplayable():
    def check(pool: Pool, request: NewRequest) -> None:
        _idle(pool, since=100.0)
        put = request(b"PUT")
        put.chunked = True
        pool.acquire(put, now=104.0)
        assert put.conn is None and pool.connecting == 1

    _with_pool(check)


def test_in_a_full_pool_the_stalest_idle_connection_makes_room_for_a_post():
    def check(pool: Pool, request: NewRequest) -> None:
        stalest = _idle(pool, since=90.0)
        _idle(pool, since=99.0)
        pool.acquire(request(b"POST"), now=101.0)
        assert stalest not in pool.conns and stalest not in pool.idle
        assert pool.connecting == 1

    _with_pool(check, max_connections=2)


def test_the_pool_learns_from_idle_connections_the_upstream_closes_and_from_no_other():
    def check(pool: Pool, request: NewRequest) -> None:
        now = time.monotonic()  # the pool's clock, as the gateway's
        ours = _idle(pool, since=now - 3.0)
        ours.close()  # the gateway closed it
        ours.connection_lost(None)
        busy = _idle(pool, since=now - 2.0)
        pool.idle.remove(busy)
        busy.exchange = request(b"GET")
        busy.connection_lost(None)  # lost while serving: a race lost or a crash, not idleness
        assert pool.idle_close.observed == NEVER
        gone = _idle(pool, since=now - 5.0)
        gone.connection_lost(None)  # the upstream closed it after 5 s idle
        assert gone not in pool.idle and gone not in pool.conns
        assert 5.0 <= pool.idle_close.observed < 5.5
        observed = pool.idle_close.observed
        assert pool.idle_close.reuse_within == observed - margin(observed)

    _with_pool(check)
