"""Retries and overload, end to end: a 503 from one upstream is retried on another for an
idempotent request and passed through for a non-idempotent one; retries stay within the
budget; panic mode spreads traffic when too few upstreams are healthy; the gateway's own
in-flight cap answers a fast 503."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from gateway.raw_upstream import RawUpstream
from gateway.stack import eventually, metric, service, surge_yaml

pytestmark = pytest.mark.integration


BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"


@pytest.fixture
def unavailable() -> Iterator[RawUpstream]:
    """Answers every request with a keep-alive 503."""
    server = RawUpstream(lambda _: BUSY)
    yield server
    server.close()


def test_a_503_is_retried_on_another_upstream_only_for_idempotent_requests(
        upstreams, gateway, unavailable):
    (good,) = upstreams(1, names=["good"])
    gw = gateway(surge_yaml(
        {"app": service([unavailable.address, good], balance="round_robin",
                        outlier={"consecutive_failures": 1000},
                        retry={"attempts": 2, "budget_percent": 100})},
        [{"prefix": "/", "service": "app"}]))
    with httpx.Client(timeout=5) as client:
        gets = [client.get(f"{gw.url}/name").status_code for _ in range(20)]
        posts = [client.post(f"{gw.url}/echo", content=b"x").status_code for _ in range(20)]
        keyed = [client.post(f"{gw.url}/echo", content=b"x",
                             headers={"Idempotency-Key": f"k{i}"}).status_code
                 for i in range(20)]
    assert gets == [200] * 20
    assert keyed == [200] * 20
    assert sorted(set(posts)) == [200, 503]   # passed through, never replayed
    assert metric(gw.admin_url, "surge_retries_total", service="app") >= 10


def test_retries_stop_at_the_budget(upstreams, gateway, unavailable):
    (good,) = upstreams(1, names=["good"])
    gw = gateway(surge_yaml(
        {"app": service([unavailable.address, good], balance="round_robin",
                        outlier={"consecutive_failures": 1000},
                        retry={"attempts": 2, "budget_percent": 10})},
        [{"prefix": "/", "service": "app"}]))
    with httpx.Client(timeout=5) as client:
        statuses = [client.get(f"{gw.url}/name").status_code for _ in range(100)]
    retries = metric(gw.admin_url, "surge_retries_total", service="app")
    # 100 requests, 10% budget with a floor of 3: about 10 retried, the rest of the 503s
    # reach the client rather than doubling the load.
    assert retries <= 10 + 3
    assert metric(gw.admin_url, "surge_retry_budget_exhausted_total", service="app") > 0
    assert statuses.count(503) >= 30


def test_panic_mode_spreads_traffic_when_too_few_upstreams_are_healthy(
        upstreams, gateway, tmp_path):
    fleet = upstreams(3, names=["a", "b", "c"])
    gw = gateway(surge_yaml(
        {"app": service(fleet, balance="round_robin", panic_threshold=50,
                        health={"path": "/healthz", "interval": "200ms", "timeout": "200ms",
                                "rise": 1, "fall": 1})},
        [{"prefix": "/", "service": "app"}]))
    eventually(lambda: metric(gw.admin_url, "surge_upstream_healthy", service="app",
                              upstream=fleet[0].address) == 1, what="a healthy")
    fleet[1].make_sick()
    fleet[2].make_sick()
    eventually(lambda: metric(gw.admin_url, "surge_service_panic", service="app") == 1,
               what="panic mode")
    with httpx.Client(timeout=5) as client:
        names = {client.get(f"{gw.url}/name").text for _ in range(30)}
    assert names == {"a", "b", "c"}   # the sick ones still answer /name: spread over all
    fleet[1].make_healthy()
    eventually(lambda: metric(gw.admin_url, "surge_service_panic", service="app") == 0,
               what="panic mode left")


def test_past_max_inflight_the_gateway_answers_a_fast_503(upstreams, gateway):
    (slow,) = upstreams(1, names=["slow"])
    gw = gateway(surge_yaml({"app": service([slow])}, [{"prefix": "/", "service": "app"}],
                            max_inflight=1))
    started = threading.Event()

    def hold() -> None:
        started.set()
        httpx.get(f"{gw.url}/slow?ms=1500", timeout=5)

    holder = threading.Thread(target=hold)
    holder.start()
    started.wait()
    eventually(lambda: metric(gw.admin_url, "surge_gateway_inflight") == 1, what="one in flight")
    answer = httpx.get(f"{gw.url}/name", timeout=5)
    holder.join(5)
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["retry-after"] == "1"
    assert httpx.get(f"{gw.url}/name", timeout=5).status_code == 200
