"""HTTP/1.1 mechanics on raw sockets, where nothing hides the framing: pipelined requests
answered in order, keep-alive, chunked bodies both ways, `Expect: 100-continue`, HTTP/1.0
clients and HEAD, the idle timeout, and a client leaving mid-request."""

from __future__ import annotations

import pytest

from gateway.stack import Wire, eventually, request, service, surge_yaml, upstream_views
from support.upstream_app import pattern

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gw(stack):
    (a,) = stack.upstreams(1, names=["a"])
    return stack.gateway(surge_yaml({"app": service([a])}, [{"prefix": "/", "service": "app"}],
                                    timeouts={"idle": "1s"}))


@pytest.fixture
def wire(gw):
    with Wire(gw.listen) as wire:
        yield wire


def test_three_pipelined_requests_in_one_write_are_answered_in_order(wire):
    # The first is the slowest: answering in completion order would put it last.
    wire.send(request("GET", "/slow?ms=200", {"X-Request-ID": "first"})
              + request("GET", "/name", {"X-Request-ID": "second"})
              + request("POST", "/echo", {"X-Request-ID": "third"}, body=b"3"))
    answers = [wire.answer() for _ in range(3)]
    assert [a.header("x-request-id") for a in answers] == ["first", "second", "third"]
    assert [a.body for a in answers] == [b"slow", b"a", b"3"]


def test_a_keep_alive_connection_serves_request_after_request(wire):
    for _ in range(5):
        wire.send(request("GET", "/name"))
        answer = wire.answer()
        assert (answer.status, answer.body) == (200, b"a")
        assert answer.header("connection") != "close"
    assert not wire.closed_by_peer(within=0.2)


def test_a_chunked_request_body_is_streamed_to_the_upstream(wire):
    head = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    wire.send(head + b"5\r\nhello\r\n")
    wire.send(b"1\r\n \r\n")
    wire.send(b"5\r\nworld\r\n0\r\n\r\n")
    answer = wire.answer()
    assert answer.status == 200
    assert answer.body == b"hello world"


def test_a_response_without_length_reaches_an_http11_client_chunked(wire):
    wire.send(request("GET", "/bytes/200000"))
    answer = wire.answer()
    assert answer.framing == "chunked"
    assert answer.body == pattern(200000)
    wire.send(request("GET", "/name"))   # the last chunk ended it: the connection is reusable
    assert wire.answer().body == b"a"


def test_expect_100_continue_gets_an_interim_answer_before_the_body_is_sent(wire):
    wire.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 7\r\n"
              b"Expect: 100-continue\r\n\r\n")
    interim = wire.answer()
    assert interim.status == 100
    wire.send(b"payload")
    answer = wire.answer()
    assert (answer.status, answer.body) == (200, b"payload")


def test_an_http10_client_gets_a_close_delimited_body_and_a_closed_connection(wire):
    wire.send(b"GET /bytes/100000 HTTP/1.0\r\nHost: t\r\n\r\n")
    answer = wire.answer()
    assert answer.status == 200
    assert answer.framing == "close"   # HTTP/1.0 has no chunked encoding
    assert answer.body == pattern(100000)


def test_an_http10_client_gets_a_length_delimited_body_when_the_length_is_known(wire):
    wire.send(b"GET /name HTTP/1.0\r\nHost: t\r\n\r\n")
    answer = wire.answer()
    assert (answer.status, answer.framing, answer.body) == (200, "length", b"a")
    assert wire.closed_by_peer()


def test_an_http10_keep_alive_client_keeps_its_connection(wire):
    for _ in range(2):
        wire.send(b"GET /name HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n")
        answer = wire.answer()
        assert answer.body == b"a"
        assert (answer.header("connection") or "").lower() == "keep-alive"


def test_head_gets_the_head_only_and_the_connection_stays_usable(wire):
    wire.send(request("HEAD", "/name"))
    answer = wire.answer(head_request=True)
    assert answer.status == 200
    assert answer.header("content-length") == "1"
    wire.send(request("GET", "/name"))  # a stray body byte would corrupt this answer
    follow_up = wire.answer()
    assert (follow_up.status, follow_up.body) == (200, b"a")


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(wire):
    wire.send(request("GET", "/name"))
    assert wire.answer().body == b"a"
    assert wire.closed_by_peer(within=3.0)


def test_a_client_that_leaves_mid_request_releases_its_upstream(gw, wire):
    wire.send(request("GET", "/slow?ms=1500"))
    eventually(lambda: inflight(gw) == 1, what="the slow request in flight")
    wire.close()
    # Well before the upstream would answer: the gateway dropped the request when the client left.
    eventually(lambda: inflight(gw) == 0, timeout=1.0, what="in-flight back to 0")
    with Wire(gw.listen) as other:
        other.send(request("GET", "/name"))
        assert other.answer().body == b"a"


def inflight(gw) -> int:
    return sum(u["inflight"] for u in upstream_views(gw.admin_url, "app").values())
