"""Reloading the config file under load, through `POST /api/reload` and through SIGHUP: the new
upstream set and routes are swapped in with no failed request, and an invalid new file is
refused (a problem listing every problem on the admin API, a log line on SIGHUP) while the old
config keeps serving."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from gateway.stack import (
    eventually,
    fast_health,
    names_seen,
    service,
    surge_yaml,
    upstream_views,
    with_changes,
)
from support.processes import LoadLoop

pytestmark = pytest.mark.integration


def start(upstreams, gateway, n: int):
    fleet = upstreams(n)
    gw = gateway(surge_yaml({"app": service(fleet[:2], health=fast_health())},
                            [{"prefix": "/", "service": "app"}]))
    eventually(lambda: all(u["healthy"] for u in upstream_views(gw.admin_url, "app").values()),
               what="both upstreams healthy")
    return fleet, gw


def swap_upstreams_and_add_a_route(fleet):
    def change(config: dict[str, Any]) -> None:
        config["services"]["app"]["upstreams"] = [fleet[1].address, fleet[2].address]
        config["routes"].insert(0, {"prefix": "/v2/", "service": "app", "strip_prefix": True})
    return change


def break_the_file(config: dict[str, Any]) -> None:
    config["routes"].append({"prefix": "/typo/", "service": "ap"})


def reload_under_load(gw, fleet, trigger) -> None:
    gw.config_path.write_text(with_changes(gw.config_path.read_text(),
                                           swap_upstreams_and_add_a_route(fleet)))
    with LoadLoop(f"{gw.url}/name", concurrency=4, rate=300) as load:
        load.wait_for(100)
        trigger()
        eventually(lambda: set(upstream_views(gw.admin_url, "app"))
                   == {fleet[1].address, fleet[2].address}, what="the new upstream set in place")
        eventually(lambda: "u2" in names_seen(f"{gw.url}/name", 6), what="traffic to u2")
        load.wait_for(load.sent + 200)
    assert load.failed == 0, load.summary()
    assert "u0" not in names_seen(f"{gw.url}/name", 30)
    assert httpx.get(f"{gw.url}/v2/name").status_code == 200   # the new route serves


def test_admin_reload_swaps_upstreams_and_routes_under_load_without_a_failure(
        upstreams, gateway):
    fleet, gw = start(upstreams, gateway, 3)

    def trigger() -> None:
        response = httpx.post(f"{gw.admin_url}/api/reload", timeout=5)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "reloaded"

    reload_under_load(gw, fleet, trigger)


def test_sighup_reload_swaps_upstreams_and_routes_under_load_without_a_failure(
        upstreams, gateway):
    fleet, gw = start(upstreams, gateway, 3)
    reload_under_load(gw, fleet, gw.reload)


def test_an_invalid_file_is_refused_by_admin_reload_with_every_problem_listed(
        upstreams, gateway):
    fleet, gw = start(upstreams, gateway, 2)
    gw.config_path.write_text(with_changes(gw.config_path.read_text(), break_the_file))
    response = httpx.post(f"{gw.admin_url}/api/reload", timeout=5)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    problems = response.json()["problems"]
    assert any("routes[1].service" in p and "did you mean 'app'" in p for p in problems), problems
    assert set(names_seen(f"{gw.url}/name", 10)) <= {"u0", "u1"}   # the old config serves
    # The refused file's route is not half in place: "/" (the upstream) answers for /typo/.
    assert httpx.get(f"{gw.url}/typo/name").headers.get("x-upstream-name") in {"u0", "u1"}


def test_an_invalid_file_on_sighup_is_logged_and_the_old_config_keeps_serving(
        upstreams, gateway):
    fleet, gw = start(upstreams, gateway, 2)
    gw.config_path.write_text(with_changes(gw.config_path.read_text(), break_the_file))
    with LoadLoop(f"{gw.url}/name", concurrency=2, rate=100) as load:
        load.wait_for(20)
        gw.reload()
        eventually(lambda: "reload refused" in gw.stderr_path.read_text(),
                   what="the refusal in the gateway's log")
        load.wait_for(load.sent + 50)
    assert load.failed == 0, load.summary()
    log = gw.stderr_path.read_text()
    assert "routes[1].service" in log and "did you mean 'app'" in log, log[-2000:]
    assert gw.running


def test_admin_api_changes_survive_a_reload_of_the_file(upstreams, gateway):
    fleet, gw = start(upstreams, gateway, 3)
    api = f"{gw.admin_url}/api/services/app/upstreams"
    assert httpx.post(api, json={"address": fleet[2].address}).status_code == 201
    assert httpx.delete(f"{api}/{fleet[0].address}").status_code == 202
    assert httpx.post(f"{gw.admin_url}/api/reload").status_code == 200
    eventually(lambda: set(upstream_views(gw.admin_url, "app"))
               == {fleet[1].address, fleet[2].address}, what="u0 removed and u2 kept")
    assert httpx.post(f"{gw.admin_url}/api/reload").status_code == 200   # once it is gone, too
    assert set(upstream_views(gw.admin_url, "app")) == {fleet[1].address, fleet[2].address}


def test_a_reload_that_drops_a_service_lets_its_request_in_flight_finish(upstreams, gateway):
    fleet = upstreams(2)
    gw = gateway(surge_yaml({"app": service(fleet[:1]), "old": service(fleet[1:])},
                            [{"prefix": "/", "service": "app"},
                             {"prefix": "/old/", "service": "old", "strip_prefix": True}]))
    answers: list[httpx.Response] = []
    slow = threading.Thread(target=lambda: answers.append(
        httpx.get(f"{gw.url}/old/slow?ms=1000", timeout=5)))
    slow.start()
    eventually(lambda: upstream_views(gw.admin_url, "old")[fleet[1].address]["inflight"] == 1,
               what="the slow request in flight")

    def drop_old(config: dict[str, Any]) -> None:
        del config["services"]["old"]
        config["routes"].pop()

    gw.config_path.write_text(with_changes(gw.config_path.read_text(), drop_old))
    assert httpx.post(f"{gw.admin_url}/api/reload").status_code == 200
    assert httpx.get(f"{gw.url}/old/name").headers.get("x-upstream-name") == "u0"  # "/" now
    slow.join(5)
    assert answers and (answers[0].status_code, answers[0].text) == (200, "slow")
