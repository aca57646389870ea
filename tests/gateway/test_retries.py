"""Retries and overload, end to end: a 503 from one upstream is retried on another for an
idempotent request and passed through for a non-idempotent one; retries stay within the
budget, whose floor (`min_per_second`) lets a quiet service retry every connect failure to a
killed upstream until outlier detection ejects it; panic mode spreads traffic when too few
upstreams are healthy; the gateway's own in-flight cap answers a fast 503."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

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
                        retry={"attempts": 2, "budget_percent": 10, "min_per_second": 10})},
        [{"prefix": "/", "service": "app"}]))
    started = time.monotonic()
    with httpx.Client(timeout=5) as client:
        statuses = [client.get(f"{gw.url}/name").status_code for _ in range(300)]
    seconds = math.ceil(time.monotonic() - started)
    retries = metric(gw.admin_url, "surge_retries_total", service="app")
    # 300 requests, half of them to the 503 upstream: 10% of them retried, plus the floor's
    # 10 a second (one second's worth at once); the rest of the 503s reach the client rather
    # than doubling the load.
    assert retries <= 30 + 10 * (1 + seconds)
    assert metric(gw.admin_url, "surge_retry_budget_exhausted_total", service="app") > 0
    assert statuses.count(503) >= 150 - retries - 2, (retries, statuses.count(503))


@pytest.mark.parametrize("clients", [1, 16])
def test_a_killed_upstream_not_yet_ejected_costs_no_request(upstreams, gateway, clients):
    # Issue 10's scenario: checks too rare to notice the kill, and (with one client) requests
    # too few for 50% of them to pay the retries; the floor must cover the connect failures
    # that come before outlier detection ejects the dead upstream, whatever the concurrency.
    fleet = upstreams(2)
    gw = gateway(surge_yaml(
        {"app": service(fleet, balance="round_robin",
                        health={"path": "/healthz", "interval": "30s"},
                        retry={"attempts": 2, "budget_percent": 50})},
        [{"prefix": "/", "service": "app"}]))
    fleet[0].kill9()

    def sixty_gets(_: int) -> list[int]:
        with httpx.Client(timeout=5) as client:
            return [client.get(f"{gw.url}/name").status_code for _ in range(60)]

    with ThreadPoolExecutor(clients) as pool:
        statuses = [s for each in pool.map(sixty_gets, range(clients)) for s in each]
    assert statuses.count(200) == len(statuses), f"{len(statuses) - statuses.count(200)} failed"
    assert metric(gw.admin_url, "surge_retries_total", service="app") >= 1


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
