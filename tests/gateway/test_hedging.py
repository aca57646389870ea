"""Hedged requests: on a route with `hedge`, an idempotent request that has no answer after the
delay is sent once more to another upstream and the first answer wins; a non-idempotent one
waits for its only copy; hedges are counted and paid from the retry budget."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from gateway.raw_upstream import RawUpstream
from gateway.stack import metric, service, surge_yaml

pytestmark = pytest.mark.integration

SLOW = 1.0


@pytest.fixture
def slow() -> Iterator[RawUpstream]:
    """Answers every request after SLOW seconds, `slow` as body, keep-alive."""
    server = RawUpstream(lambda _: b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow",
                         delay=SLOW)
    yield server
    server.close()


def hedged(upstreams, gateway, slow):
    """A gateway hedging after 100 ms between the slow upstream and a fast one, in turn."""
    (fast,) = upstreams(1, names=["fast"])
    return gateway(surge_yaml(
        {"app": service([slow.address, fast], balance="round_robin",
                        retry={"budget_percent": 100})},
        [{"prefix": "/", "service": "app", "hedge": {"delay": "100ms"}}]))


def test_a_slow_idempotent_request_is_hedged_and_the_first_answer_wins(upstreams, gateway,
                                                                        slow):
    gw = hedged(upstreams, gateway, slow)
    with httpx.Client(timeout=5) as client:
        for _ in range(6):
            started = time.monotonic()
            answer = client.get(f"{gw.url}/name")
            assert answer.status_code == 200
            assert answer.text == "fast"
            assert time.monotonic() - started < SLOW * 0.8
    assert metric(gw.admin_url, "surge_hedges_total", service="app") >= 2
    assert metric(gw.admin_url, "surge_hedge_wins_total", service="app") >= 2


def test_a_non_idempotent_request_is_never_hedged(upstreams, gateway, slow):
    gw = hedged(upstreams, gateway, slow)
    with httpx.Client(timeout=5) as client:
        bodies = [client.post(f"{gw.url}/echo", content=b"fast").text for _ in range(4)]
    assert sorted(bodies) == ["fast", "fast", "slow", "slow"]
    assert metric(gw.admin_url, "surge_hedges_total", service="app") == 0
