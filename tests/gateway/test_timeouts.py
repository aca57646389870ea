"""Every timeout has its own answer and its own metric reason: a client that stalls its body
(408), an upstream that stalls its body (the response is cut off), a route's total deadline
(504). Each is enforced by the sweeper while other clients are served normally."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from gateway.raw_upstream import RawUpstream
from gateway.stack import Wire, assert_problem, failed_count, service, surge_yaml

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stalling() -> Iterator[RawUpstream]:
    """Answers a head promising 100 bytes, sends 10, then goes quiet."""
    server = RawUpstream(
        lambda _: b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
    yield server
    server.close()


@pytest.fixture(scope="module")
def gw(stack, stalling):
    (good,) = stack.upstreams(1, names=["good"])
    services = {"good": service([good]), "stalling": service([stalling.address])}
    routes = [{"prefix": "/", "service": "good"},
              {"prefix": "/stalling/", "service": "stalling", "strip_prefix": True},
              {"prefix": "/deadline/", "service": "good", "strip_prefix": True,
               "timeout": "500ms"}]
    return stack.gateway(surge_yaml(services, routes, timeouts={
        "client_body": "1s", "upstream_body": "1s", "upstream": "10s"}))


def test_a_client_that_stalls_its_body_gets_408(gw):
    before = failed_count(gw.admin_url, "client_body_timeout")
    with Wire(gw.listen) as wire:
        wire.send(b"POST /record HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789")
        answer = wire.answer()
    assert_problem(answer.status, answer.header("content-type"), answer.body, 408)
    assert failed_count(gw.admin_url, "client_body_timeout") == before + 1
    assert httpx.get(f"{gw.url}/name", timeout=5).status_code == 200


def test_an_upstream_that_stalls_its_body_is_cut_off(gw):
    before = failed_count(gw.admin_url, "upstream_body_timeout")
    started = time.monotonic()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{gw.url}/stalling/x", timeout=10).read()
    assert time.monotonic() - started < 8  # well before the client's own timeout
    assert failed_count(gw.admin_url, "upstream_body_timeout") == before + 1
    assert httpx.get(f"{gw.url}/name", timeout=5).status_code == 200


def test_a_route_deadline_answers_504_with_its_own_type(gw):
    before = failed_count(gw.admin_url, "route_deadline")
    answer = httpx.get(f"{gw.url}/deadline/slow?ms=3000", timeout=10)
    document = assert_problem(answer.status_code, answer.headers["content-type"],
                              answer.content, 504)
    assert document["type"].endswith("/route-deadline")
    assert failed_count(gw.admin_url, "route_deadline") == before + 1
    assert httpx.get(f"{gw.url}/deadline/name", timeout=5).status_code == 200
