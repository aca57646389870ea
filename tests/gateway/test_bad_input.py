"""Bad input from either side gets a problem+json answer, is counted under its reason in
`/metrics`, and leaves the gateway serving: malformed requests (400), heads too large (431),
bodies too large (413), clients too slow with their head (cut off), upstreams that refuse (502),
talk garbage (502) or do not answer in time (504)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from gateway.raw_upstream import RawUpstream
from gateway.stack import (
    Answer,
    Wire,
    assert_problem,
    eventually,
    failed_count,
    request,
    service,
    surge_yaml,
    upstream_views,
)
from support.processes import free_port

pytestmark = pytest.mark.integration

MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def garbage() -> Iterator[RawUpstream]:
    """Reads a request, answers `garbage\\r\\n\\r\\n`, closes."""
    server = RawUpstream(lambda _: b"garbage\r\n\r\n", close_after=True)
    yield server
    server.close()


@pytest.fixture(scope="module")
def gw(stack, garbage):
    (good,) = stack.upstreams(1, names=["good"])
    services = {"good": service([good]), "refusing": service([f"127.0.0.1:{free_port()}"]),
                "garbage": service([garbage.address]),
                "narrow": service([good], max_connections=1, max_pending=1)}
    routes = [{"prefix": "/", "service": "good"},
              {"prefix": "/refusing/", "service": "refusing", "strip_prefix": True},
              {"prefix": "/garbage/", "service": "garbage", "strip_prefix": True},
              {"prefix": "/narrow/", "service": "narrow", "strip_prefix": True}]
    return stack.gateway(surge_yaml(
        services, routes, max_header_bytes="4KiB", max_body_bytes=MAX_BODY,
        timeouts={"client_header": "1s", "upstream": "1s"}))


def check_counted_problem(gw, reason: str, expected: int, answer: Callable[[], Answer]) -> dict:
    """`answer()` gets a problem with status `expected`, counted once under `reason`, and a new
    client is served normally afterwards."""
    before = failed_count(gw.admin_url, reason)
    got = answer()
    document = assert_problem(got.status, got.header("content-type"), got.body, expected)
    assert failed_count(gw.admin_url, reason) == before + 1
    assert httpx.get(f"{gw.url}/name", timeout=5).text == "good"
    return document


def raw(gw, data: bytes) -> Answer:
    with Wire(gw.listen) as wire:
        wire.send(data)
        return wire.answer()


def test_a_malformed_request_line_gets_400(gw):
    check_counted_problem(gw, "bad_request", 400, lambda: raw(gw, b"NOT AN HTTP REQUEST\r\n\r\n"))


def test_a_malformed_header_line_gets_400(gw):
    check_counted_problem(gw, "bad_request", 400, lambda: raw(
        gw, b"GET /name HTTP/1.1\r\nHost: t\r\nno colon here\r\n\r\n"))


def test_a_request_with_both_content_length_and_chunked_gets_400(gw):
    # Two framings disagree: forwarding either one invites request smuggling.
    check_counted_problem(gw, "bad_request", 400, lambda: raw(
        gw, b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"))


def test_a_head_over_max_header_bytes_gets_431(gw):
    check_counted_problem(gw, "header_too_large", 431, lambda: raw(
        gw, request("GET", "/name", {"X-Big": "x" * 5000})))


def test_a_declared_body_over_max_body_bytes_gets_413_before_it_is_sent(gw):
    def answer() -> Answer:
        with Wire(gw.listen) as wire:
            wire.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
                      % (MAX_BODY + 1))
            return wire.answer()

    check_counted_problem(gw, "body_too_large", 413, answer)


def test_a_chunked_body_growing_over_max_body_bytes_gets_413(gw):
    def answer() -> Answer:
        with Wire(gw.listen) as wire:
            # /record answers only after the whole body: the 413 is the first answer.
            wire.send(b"POST /record HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
            piece = b"%x\r\n%s\r\n" % (16384, b"x" * 16384)
            try:
                for _ in range(MAX_BODY // 16384 + 4):
                    wire.send(piece)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the gateway stopped reading once it answered
            return wire.answer()

    check_counted_problem(gw, "body_too_large", 413, answer)


def test_a_client_sending_its_head_too_slowly_is_cut_off_while_others_are_served(gw):
    before = failed_count(gw.admin_url, "client_header_timeout")
    started = time.monotonic()
    with Wire(gw.listen) as slow, httpx.Client(base_url=gw.url, timeout=5) as other:
        head = b"GET /name HTTP/1.1\r\nHost: t\r\nX-Slow: 1\r\n"
        cut_off = False
        for byte in head:
            try:
                slow.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                cut_off = True
                break
            assert other.get("/name").text == "good"   # served while the slow one dawdles
            if slow.closed_by_peer(within=0.1):
                cut_off = True
                break
        assert cut_off, "the slow client was never cut off"
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 5.0, elapsed   # cut at about client_header (1s), not before
    assert failed_count(gw.admin_url, "client_header_timeout") == before + 1
    assert slow.buffer.startswith(b"HTTP/1.1 408 "), slow.buffer   # told why, then closed
    assert b"application/problem+json" in slow.buffer


def test_an_upstream_that_refuses_connections_gets_502(gw):
    document = check_counted_problem(gw, "connect_failed", 502, lambda: raw(
        gw, request("GET", "/refusing/name")))
    assert "refusing" in document["detail"]


def test_an_upstream_that_answers_garbage_gets_502(gw):
    check_counted_problem(gw, "upstream_garbage", 502, lambda: raw(
        gw, request("GET", "/garbage/name")))


def test_an_upstream_that_does_not_answer_within_the_upstream_timeout_gets_504(gw):
    # The upstream would answer 200 after 2s; the 1s timeout answers first.
    check_counted_problem(gw, "upstream_timeout", 504, lambda: raw(
        gw, request("GET", "/slow?ms=2000")))


def test_a_request_past_max_pending_gets_503_while_those_within_it_are_served(gw):
    """max_connections 1 and max_pending 1: one request runs, one waits, the third is refused."""
    answers: list[int] = []
    threads = [threading.Thread(target=lambda: answers.append(
        httpx.get(f"{gw.url}/narrow/slow?ms=900", timeout=10).status_code)) for _ in range(2)]
    for running, thread in enumerate(threads, start=1):
        thread.start()
        eventually(lambda n=running: inflight(gw, "narrow") == n, what=f"{running} in flight")
    check_counted_problem(gw, "max_pending", 503, lambda: raw(gw, request("GET", "/narrow/name")))
    for thread in threads:
        thread.join(10)
    assert answers == [200, 200]


def inflight(gw, service_name: str) -> int:
    return sum(u["inflight"] for u in upstream_views(gw.admin_url, service_name).values())


def test_an_http11_request_without_host_gets_400(upstreams, gateway):
    # RFC 9112 3.2: a server MUST answer 400 to an HTTP/1.1 request with no Host header.
    (a,) = upstreams(1)
    gw = gateway(surge_yaml({"app": service([a])}, [{"prefix": "/", "service": "app"}]))
    with Wire(gw.listen) as wire:
        wire.send(b"GET /name HTTP/1.1\r\n\r\n")
        answer = wire.answer()
    assert_problem(answer.status, answer.header("content-type"), answer.body, 400)
