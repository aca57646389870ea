"""Resilience with three real upstream processes: one killed under load costs no client a
request; active health checks take a sick upstream out after `fall` checks and back after
`rise`; an upstream added through the admin API is warmed before it gets traffic; admin add and
drain-and-remove under load fail nothing; passive outlier detection ejects and returns."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from gateway.stack import (
    assert_problem,
    eventually,
    fast_health,
    metric,
    names_seen,
    service,
    surge_yaml,
    upstream_views,
)
from support.processes import LoadLoop

pytestmark = pytest.mark.integration

ROUTES = [{"prefix": "/", "service": "app"}]


def start(upstreams, gateway, n: int = 3, **options):
    fleet = upstreams(n)
    options.setdefault("health", fast_health())
    gw = gateway(surge_yaml({"app": service(fleet, **options)}, ROUTES))
    # Every upstream is admitted by its first passing check; wait for all of them.
    eventually(lambda: all(u["healthy"] for u in upstream_views(gw.admin_url, "app").values()),
               what="all upstreams healthy")
    return fleet, gw


def add_upstream(gw, address: str) -> httpx.Response:
    return httpx.post(f"{gw.admin_url}/api/services/app/upstreams",
                      json={"address": address, "weight": 1})


# The issue asks that no request fails once the dead upstream is detected. Before that, a
# response the upstream had begun when it was killed cannot be saved by any proxy (its head is
# already with the client); usually there is none, at most the 4 requests in flight.
CUT_AT_THE_KILL = 4


def test_killing_an_upstream_under_steady_load_fails_no_client_request(upstreams, gateway):
    fleet, gw = start(upstreams, gateway)
    with LoadLoop(f"{gw.url}/name", concurrency=4, rate=300) as load:
        load.wait_for(150)
        fleet[0].kill9()
        eventually(lambda: not upstream_views(gw.admin_url, "app")[fleet[0].address]["healthy"],
                   what="the killed upstream marked unhealthy")
        at_detection = load.failed
        load.wait_for(load.sent + 300)
    assert load.failed == at_detection, load.summary()   # none once it is detected
    assert at_detection <= CUT_AT_THE_KILL, load.summary()
    assert "u0" not in names_seen(f"{gw.url}/name", 30)


def test_without_health_checks_a_killed_upstream_is_ejected_by_its_connect_failures(
        upstreams, gateway):
    fleet, gw = start(upstreams, gateway, health=None)
    with LoadLoop(f"{gw.url}/name", concurrency=4, rate=300) as load:
        load.wait_for(150)
        fleet[0].kill9()
        eventually(lambda: upstream_views(gw.admin_url, "app")[fleet[0].address]["ejected"],
                   what="the killed upstream ejected by passive outlier detection")
        at_detection = load.failed
        load.wait_for(load.sent + 200)
    assert load.failed == at_detection, load.summary()   # none once it is detected
    assert at_detection <= CUT_AT_THE_KILL, load.summary()
    assert metric(gw.admin_url, "surge_retries_total", service="app") >= 1


def test_a_sick_upstream_leaves_after_fall_checks_and_returns_after_rise(upstreams, gateway):
    fleet, gw = start(upstreams, gateway, balance="round_robin")
    sick = fleet[0]
    sick.make_sick()
    eventually(lambda: not upstream_views(gw.admin_url, "app")[sick.address]["healthy"],
               what="the sick upstream marked unhealthy")
    assert "u0" not in names_seen(f"{gw.url}/name", 30)
    assert metric(gw.admin_url, "surge_upstream_healthy", upstream=sick.address) == 0
    sick.make_healthy()
    eventually(lambda: upstream_views(gw.admin_url, "app")[sick.address]["healthy"],
               what="the recovered upstream marked healthy again")
    assert set(names_seen(f"{gw.url}/name", 30)) == {"u0", "u1", "u2"}


def test_an_upstream_added_through_the_admin_api_gets_traffic_only_after_passing_a_check(
        upstreams, gateway):
    fleet, gw = start(upstreams, gateway, n=2, balance="round_robin")
    (newcomer,) = upstreams(1, names=["new"])
    newcomer.make_sick()   # it listens and answers traffic, but fails its checks
    response = add_upstream(gw, newcomer.address)
    assert response.status_code == 201, response.text
    view = upstream_views(gw.admin_url, "app")[newcomer.address]
    assert view["healthy"] is False
    with httpx.Client(timeout=5) as client:
        for _ in range(10):   # about a second: several check rounds, all failed
            assert "new" not in names_seen(f"{gw.url}/name", 10, client)
            time.sleep(0.1)
    newcomer.make_healthy()
    eventually(lambda: "new" in names_seen(f"{gw.url}/name", 3), what="traffic to the newcomer")


def test_admin_add_then_drain_and_remove_under_load_fails_no_request(upstreams, gateway):
    fleet, gw = start(upstreams, gateway, n=2)
    (newcomer,) = upstreams(1, names=["new"])
    with LoadLoop(f"{gw.url}/name", concurrency=4, rate=300) as load:
        load.wait_for(100)
        assert add_upstream(gw, newcomer.address).status_code == 201
        eventually(lambda: "new" in names_seen(f"{gw.url}/name", 6),
                   what="traffic to the added upstream")
        removed = fleet[0].address
        response = httpx.delete(f"{gw.admin_url}/api/services/app/upstreams/{removed}")
        assert response.status_code == 202, response.text
        eventually(lambda: removed not in upstream_views(gw.admin_url, "app"),
                   what="the drained upstream removed")
        load.wait_for(load.sent + 200)
    assert load.failed == 0, load.summary()
    assert "u0" not in names_seen(f"{gw.url}/name", 30)


def test_services_view_shows_a_draining_upstream_until_its_last_request_ends(
        upstreams, gateway):
    fleet, gw = start(upstreams, gateway, n=1)
    address = fleet[0].address
    answers: list[httpx.Response] = []
    slow = threading.Thread(target=lambda: answers.append(
        httpx.get(f"{gw.url}/slow?ms=1500", timeout=5)))
    slow.start()
    eventually(lambda: upstream_views(gw.admin_url, "app")[address]["inflight"] == 1,
               what="the slow request in flight")
    assert httpx.delete(f"{gw.admin_url}/api/services/app/upstreams/{address}").status_code == 202
    view = upstream_views(gw.admin_url, "app")[address]
    assert (view["draining"], view["inflight"]) == (True, 1)
    slow.join(5)
    assert answers and answers[0].status_code == 200 and answers[0].text == "slow"
    eventually(lambda: address not in upstream_views(gw.admin_url, "app"),
               what="the drained upstream removed")
    assert httpx.get(f"{gw.url}/name").status_code == 503   # nothing left to serve


def test_passive_outlier_detection_ejects_a_failing_upstream_and_returns_it(upstreams, gateway):
    fleet, gw = start(upstreams, gateway, balance="hash", hash_on="header:X-User",
                      outlier={"consecutive_failures": 3, "ejection": "1s"})
    user = next(f"user-{i}" for i in range(1000)
                if httpx.get(f"{gw.url}/name", headers={"X-User": f"user-{i}"}).text == "u0")
    headers = {"X-User": user}
    for _ in range(3):   # 5xx answers from the upstream that user maps to
        assert httpx.get(f"{gw.url}/status/500", headers=headers).status_code == 500
    view = upstream_views(gw.admin_url, "app")[fleet[0].address]
    assert view["ejected"] is True
    assert metric(gw.admin_url, "surge_upstream_ejections_total", service="app") == 1
    assert httpx.get(f"{gw.url}/name", headers=headers).text != "u0"
    eventually(lambda: not upstream_views(gw.admin_url, "app")[fleet[0].address]["ejected"],
               what="the ejected upstream back after its ejection time and a passed check")
    assert httpx.get(f"{gw.url}/name", headers=headers).text == "u0"


def test_with_no_healthy_upstream_the_answer_is_a_quick_503_with_retry_after(upstreams, gateway):
    fleet, gw = start(upstreams, gateway, n=1)
    fleet[0].make_sick()
    eventually(lambda: not upstream_views(gw.admin_url, "app")[fleet[0].address]["healthy"],
               what="the only upstream marked unhealthy")
    response = httpx.get(f"{gw.url}/name", timeout=5)
    document = assert_problem(response.status_code, response.headers.get("content-type"),
                              response.content, 503)
    assert "app" in document["detail"]
    assert response.headers["retry-after"].isdigit()
    assert metric(gw.admin_url, "surge_requests_failed_total", reason="no_healthy_upstream") == 1


def test_a_gateway_listens_only_once_its_first_health_checks_are_back(upstreams, gateway):
    # Checks that take 400 ms, once every 30 s: only the first round can have admitted the
    # upstreams by the time the gateway accepts its first connection.
    health = fast_health(path="/slow?ms=400", interval="30s", timeout="1s", rise=1)
    fleet = upstreams(2)
    gw = gateway(surge_yaml({"app": service(fleet, health=health)}, ROUTES))
    assert httpx.get(f"{gw.url}/name").status_code == 200
    assert all(u["healthy"] for u in upstream_views(gw.admin_url, "app").values())
