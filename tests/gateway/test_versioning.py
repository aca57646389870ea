"""API versions and deprecated routes through a real gateway (`surge up`) and real upstreams:
the version read from the header, then the query, then the default, both forwarded unchanged;
a version no route of a prefix serves is a counted 400 naming the known ones; a deprecated
route's responses carry Deprecation, Sunset and Link, and its callers are counted per API key,
with one worker and with two (the master's /metrics shows every worker's counts)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.stack import (
    assert_problem,
    eventually,
    failed_count,
    metric,
    service,
    surge_yaml,
    with_changes,
)

pytestmark = pytest.mark.integration

SINCE_EPOCH = "@1764547200"            # 2025-12-01T00:00:00Z
SUNSET = "Wed, 30 Jun 2027 00:00:00 GMT"


def _config(fleet: list[Any], **gateway: Any) -> str:
    v1, v2 = fleet
    routes = [
        {"name": "api-v1", "prefix": "/api/", "service": "v1", "version": "1",
         "strip_prefix": True, "rate_limit": True,
         "deprecated": {"since": "2025-12-01", "sunset": "2027-06-30",
                        "link": "https://example.com/migrate"}},
        {"name": "api-v2", "prefix": "/api/", "service": "v2", "version": "2",
         "strip_prefix": True, "rate_limit": True},
        {"prefix": "/", "service": "v2"},
    ]

    def add(data: dict[str, Any]) -> None:
        data["versioning"] = {"header": "API-Version", "query": "version", "default": "1"}
        data["rate_limits"] = {"key": "header:X-Client",
                               "plans": {"anonymous": ["1000/minute"]}}
    return with_changes(surge_yaml({"v1": service([v1]), "v2": service([v2])}, routes,
                                   **gateway), add)


@pytest.fixture(scope="module")
def fleet(stack):
    return stack.upstreams(2, names=["v1", "v2"])


@pytest.fixture(scope="module")
def gw(stack, fleet):
    return stack.gateway(_config(fleet))


@pytest.mark.parametrize(("headers", "params", "upstream"), [
    pytest.param({}, {}, "v1", id="none: the default"),
    pytest.param({"API-Version": "2"}, {}, "v2", id="header"),
    pytest.param({}, {"version": "2"}, "v2", id="query"),
    pytest.param({"API-Version": "1"}, {"version": "2"}, "v1", id="header before query"),
])
def test_the_version_picks_the_route(gw, headers, params, upstream):
    answer = httpx.get(f"{gw.url}/api/name", headers=headers, params=params, timeout=5)
    assert answer.status_code == 200 and answer.text == upstream


def test_the_version_header_and_parameter_reach_the_upstream_unchanged(gw):
    answer = httpx.get(f"{gw.url}/api/headers?version=2", headers={"API-Version": "2"},
                       timeout=5)
    assert answer.status_code == 200
    assert answer.json()["api-version"] == "2"


def test_a_version_the_prefix_does_not_serve_is_a_counted_400_naming_the_known_ones(gw):
    before = failed_count(gw.admin_url, "unknown_version")
    answer = httpx.get(f"{gw.url}/api/name", headers={"API-Version": "3"}, timeout=5)
    problem = assert_problem(answer.status_code, answer.headers.get("content-type"),
                             answer.content, 400)
    assert problem["type"].endswith("/unknown-version")
    assert "versions 1, 2" in problem["detail"] and "'3'" in problem["detail"]
    assert failed_count(gw.admin_url, "unknown_version") == before + 1
    # Another prefix serves any version: the root route still answers.
    assert httpx.get(f"{gw.url}/name", headers={"API-Version": "3"}, timeout=5).text == "v2"


def test_a_deprecated_route_says_so_and_counts_its_callers(gw):
    answer = httpx.get(f"{gw.url}/api/name", timeout=5)
    assert answer.headers["deprecation"] == SINCE_EPOCH
    assert answer.headers["sunset"] == SUNSET
    assert answer.headers["link"] == '<https://example.com/migrate>; rel="sunset"'
    current = httpx.get(f"{gw.url}/api/name", headers={"API-Version": "2"}, timeout=5)
    assert "deprecation" not in current.headers and "sunset" not in current.headers
    assert metric(gw.admin_url, "surge_deprecated_requests_total", route="/api/",
                  caller="anonymous") >= 1
    made = httpx.post(f"{gw.admin_url}/api/keys", json={"name": "acme", "plan": "anonymous"},
                      timeout=5).json()
    for _ in range(3):
        assert httpx.get(f"{gw.url}/api/name", headers={"X-API-Key": made["key"]},
                         timeout=5).status_code == 200
    callers = {labels["caller"] for labels in _samples(gw, "surge_deprecated_requests_total")}
    (by_key,) = callers - {"anonymous"}
    assert made["id"] in by_key
    assert metric(gw.admin_url, "surge_deprecated_requests_total", caller=by_key) == 3


def _samples(gw: Any, name: str) -> list[dict[str, str]]:
    text = httpx.get(f"{gw.admin_url}/metrics", timeout=5).text
    return [s.labels for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == name]


def test_under_two_workers_each_counts_and_the_master_shows_the_sum(stack, fleet):
    gw = stack.gateway(_config(fleet, workers=2))
    seen = set()
    for _ in range(12):
        answer = httpx.get(f"{gw.url}/api/name", headers={"Connection": "close"}, timeout=5)
        assert answer.headers["deprecation"] == SINCE_EPOCH
        seen.add(answer.headers["x-request-id"].rsplit("-", 1)[0])
    assert len(seen) == 2, "one worker answered all: the test proves nothing"
    refused = httpx.get(f"{gw.url}/api/name", params={"version": "9"}, timeout=5)
    assert refused.status_code == 400

    def counted() -> float:
        return metric(gw.admin_url, "surge_deprecated_requests_total", caller="anonymous")
    eventually(lambda: counted() == 12, what="12 deprecated calls summed over both workers")
