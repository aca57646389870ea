"""The admin `/metrics` of a running gateway: requests by route, service and status class, the
duration histogram, failures by reason, and the upstream gauges (health, ejection, in flight,
pool connections), all in valid Prometheus text; and the access log, one JSON line a request."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.stack import Wire, eventually, metric, service, surge_yaml

pytestmark = pytest.mark.integration

LABELS = {"route": "/api/", "service": "app"}


@pytest.fixture(scope="module")
def fleet(stack):
    return stack.upstreams(2)


@pytest.fixture(scope="module")
def gw(stack, fleet):
    gateway = stack.gateway(surge_yaml({"app": service(fleet)},
                                       [{"prefix": "/api/", "service": "app",
                                         "strip_prefix": True}]))
    with httpx.Client(base_url=gateway.url, timeout=5) as client:
        for path, times in (("/api/name", 5), ("/api/status/404", 3), ("/api/status/503", 2),
                            ("/elsewhere", 1)):
            for _ in range(times):
                client.get(path)
    return gateway


def samples(admin_url: str) -> dict[str, list]:
    text = httpx.get(f"{admin_url}/metrics").text
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def test_requests_are_counted_by_route_service_and_status_class(gw):
    def count(code: str) -> float:
        return metric(gw.admin_url, "surge_requests_total", code=code, **LABELS)
    assert (count("2xx"), count("4xx"), count("5xx")) == (5, 3, 2)


def test_the_duration_histogram_has_cumulative_buckets_ending_at_the_count(gw):
    histogram = samples(gw.admin_url)["surge_request_duration_seconds"]
    buckets = [s for s in histogram if s.name.endswith("_bucket") and s.labels["route"] == "/api/"]
    counts = [s.value for s in buckets]
    assert counts == sorted(counts) and len(counts) > 5
    assert buckets[-1].labels["le"] == "+Inf" and counts[-1] == 10
    assert metric(gw.admin_url, "surge_request_duration_seconds_count", **LABELS) == 10
    assert metric(gw.admin_url, "surge_request_duration_seconds_sum", **LABELS) > 0


def test_requests_the_gateway_answers_itself_are_counted_by_reason(gw):
    assert metric(gw.admin_url, "surge_requests_failed_total", reason="no_route") == 1
    # An upstream's own 5xx is its answer, not a gateway failure.
    assert metric(gw.admin_url, "surge_requests_failed_total") == 1


def test_every_upstream_has_health_ejection_inflight_and_pool_gauges(gw, fleet):
    for upstream in fleet:
        key = {"service": "app", "upstream": upstream.address}
        assert metric(gw.admin_url, "surge_upstream_healthy", **key) == 1
        assert metric(gw.admin_url, "surge_upstream_ejected", **key) == 0
        assert metric(gw.admin_url, "surge_upstream_inflight", **key) == 0
    assert metric(gw.admin_url, "surge_upstream_pool_connections", state="open") >= 1
    assert metric(gw.admin_url, "surge_upstream_pool_connections", state="idle") >= 1
    names = samples(gw.admin_url)
    for family in ("surge_upstream_ejections", "surge_retries", "surge_pending_requests",
                   "surge_client_connections"):
        assert family in names, sorted(names)


def test_the_inflight_gauge_counts_a_request_while_it_is_under_way(gw):
    slow = threading.Thread(target=httpx.get, args=(f"{gw.url}/api/slow?ms=800",),
                            kwargs={"timeout": 5})
    slow.start()
    eventually(lambda: metric(gw.admin_url, "surge_upstream_inflight", service="app") == 1,
               what="one request in flight")
    slow.join(5)
    assert metric(gw.admin_url, "surge_upstream_inflight", service="app") == 0


def test_the_access_log_file_gets_one_json_line_per_request(stack, fleet, tmp_path):
    log_path = tmp_path / "access.jsonl"
    gw = stack.gateway(surge_yaml({"app": service(fleet)},
                                  [{"prefix": "/api/", "service": "app", "strip_prefix": True}],
                                  access_log=str(log_path)), name="logged")
    with httpx.Client(base_url=gw.url, timeout=5) as client:
        echoed = client.post("/api/echo", content=b"x" * 1000)
        unrouted = client.get("/nowhere")

    def lines() -> list[dict]:
        text = log_path.read_text() if log_path.exists() else ""
        return [json.loads(line) for line in text.splitlines()]

    eventually(lambda: len(lines()) == 2, what="two access log lines")
    first, second = lines()
    assert first["request_id"] == echoed.headers["x-request-id"]
    assert (first["method"], first["path"], first["status"]) == ("POST", "/api/echo", 200)
    assert first["upstream"] in {u.address for u in fleet}
    assert first["bytes"] == 1000 and first["duration_ms"] >= 0 and first["time"] > 0
    assert second["request_id"] == unrouted.headers["x-request-id"]
    assert (second["status"], second["upstream"]) == (404, None)


def test_requests_refused_while_parsing_are_in_the_access_log(upstreams, gateway, tmp_path):
    # The issue: "one JSON line per request", including those refused while parsing.
    (a,) = upstreams(1)
    log_path = tmp_path / "access.jsonl"
    gw = gateway(surge_yaml({"app": service([a])}, [{"prefix": "/", "service": "app"}],
                            access_log=str(log_path)))
    with Wire(gw.listen) as wire:
        wire.send(b"NOT HTTP\r\n\r\n")
        assert wire.answer().status == 400
    time.sleep(0.5)   # the sweeper flushes the log every 100 ms
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [line["status"] for line in lines] == [400]
