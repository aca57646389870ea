"""A reload (SIGHUP or `POST /api/reload`) reconciles the supervisor with the new surge.yaml,
with real replicas under load and no failed request: a changed env is rolled out one replica
at a time; a new service with `process` starts its replicas and a removed one drains its
in-flight requests before its replicas stop; changed scaling bounds and a changed fixed count
apply at once; a reload naming a command that cannot be found is refused whole. With
`workers: 2` the master reconciles, and the removed service drains in every worker."""

# ruff: noqa: F811  (test parameters named after the imported `gateway` fixture)
from __future__ import annotations

import sys
import threading
from typing import Any

import httpx
import pytest

from gateway.stack import eventually, with_changes
from scaling.scaled_stack import APP_COMMAND, event_kinds, ready, scaled_yaml, scaling_view
from support.fixtures import gateway  # noqa: F401  (the fixture, used by name below)
from support.processes import LoadLoop, process_gone

pytestmark = pytest.mark.integration


def _rewrite(gw: Any, text: str, change: Any) -> str:
    """Write the changed surge.yaml and SIGHUP the gateway; the new text."""
    text = with_changes(text, change)
    gw.config_path.write_text(text)
    gw.reload()
    return text


def _set_env(value: str) -> Any:
    def change(data: dict[str, Any]) -> None:
        data["services"]["app"]["process"]["env"] = {"REPLICA_NAME": value}
    return change


def test_a_changed_env_rolls_out_one_replica_at_a_time_with_no_failed_request(gateway):
    text = with_changes(scaled_yaml(replicas=2), _set_env("v1"))
    gw = gateway(text)
    eventually(lambda: len(ready(gw.admin_url)) == 2, 15, "two replicas ready")
    before = {p["name"] for p in ready(gw.admin_url)}
    with LoadLoop(f"{gw.url}/", concurrency=4, rate=200) as load:
        load.wait_for(100)
        _rewrite(gw, text, _set_env("v2"))
        eventually(lambda: scaling_view(gw.admin_url)["restarting"], 5, "a rolling restart")
        while (view := scaling_view(gw.admin_url))["restarting"]:
            # Max surge 1, max unavailable 0 (draining replicas count as neither).
            assert view["replicas"] <= 3
            assert [p["state"] for p in view["processes"]].count("ready") >= 2
        load.wait_for(load.sent + 100)
    assert load.failed == 0, load.summary()
    after = ready(gw.admin_url)
    assert len(after) == 2 and not before & {p["name"] for p in after}
    assert {httpx.get(f"{gw.url}/").json()["replica"] for _ in range(4)} == {"v2"}
    assert "restarted" in event_kinds(gw.admin_url)


def _add_extra(data: dict[str, Any]) -> None:
    data["services"]["extra"] = {"process": {"command": APP_COMMAND, "replicas": 1},
                                 "health": data["services"]["app"]["health"]}
    data["routes"].insert(0, {"prefix": "/extra/", "service": "extra", "strip_prefix": True})


def _drop_extra(data: dict[str, Any]) -> None:
    del data["services"]["extra"]
    data["routes"] = [r for r in data["routes"] if r["service"] != "extra"]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_new_service_starts_its_replicas_and_a_removed_one_drains_before_stopping(
        gateway, workers):
    text = scaled_yaml(replicas=1, workers=workers)
    gw = gateway(text)
    eventually(lambda: len(ready(gw.admin_url)) == 1, 15, "the app replica ready")
    with LoadLoop(f"{gw.url}/", concurrency=4, rate=100) as load:
        text = _rewrite(gw, text, _add_extra)
        eventually(lambda: len(ready(gw.admin_url, "extra")) == 1, 15, "the new service ready")
        assert httpx.get(f"{gw.url}/extra/").status_code == 200
        pid = ready(gw.admin_url, "extra")[0]["pid"]
        slow: list[int] = []
        requests = [threading.Thread(target=lambda: slow.append(httpx.get(
            f"{gw.url}/extra/work?ms=1500", timeout=10).status_code)) for _ in range(2)]
        for request in requests:
            request.start()
        eventually(lambda: sum(u["inflight"] for u in httpx.get(
            f"{gw.admin_url}/api/services/extra").json()["upstreams"]) == 2, 5,
            "two slow requests in flight")
        _rewrite(gw, text, _drop_extra)
        for request in requests:
            request.join(10)
        assert slow == [200, 200]  # the removed service's replica finished them first
        eventually(lambda: process_gone(pid), 10, "the removed service's replica stopped")
        assert "extra" not in httpx.get(f"{gw.admin_url}/api/scaling").json()["services"]
        load.wait_for(load.sent + 50)
    assert load.failed == 0, load.summary()


def _scaling(**bounds: Any) -> Any:
    def change(data: dict[str, Any]) -> None:
        data["services"]["app"]["scaling"] = {
            **bounds, "target": {"cpu_percent": 80},
            "scale_down": {"stabilization": "300s", "max_step": 1}}
    return change


def test_changed_scaling_bounds_and_a_changed_fixed_count_apply_at_once(gateway):
    text = with_changes(scaled_yaml(replicas=3), _scaling(min=1, max=3))
    gw = gateway(text)
    eventually(lambda: len(ready(gw.admin_url)) == 3, 20, "three replicas ready")
    with LoadLoop(f"{gw.url}/", concurrency=4, rate=100) as load:
        # A 300 s scale-down window and a one-replica step: only the new max can do this.
        text = _rewrite(gw, text, _scaling(min=1, max=1))
        eventually(lambda: scaling_view(gw.admin_url)["replicas"] == 1, 5, "capped at max 1")
        assert scaling_view(gw.admin_url)["max"] == 1
        text = _rewrite(gw, text, _scaling(min=2, max=4))
        eventually(lambda: len(ready(gw.admin_url)) == 2, 15, "raised to min 2")

        def fixed(count: int) -> Any:
            def change(data: dict[str, Any]) -> None:
                del data["services"]["app"]["scaling"]
                data["services"]["app"]["process"]["replicas"] = count
            return change

        text = _rewrite(gw, text, fixed(3))
        eventually(lambda: len(ready(gw.admin_url)) == 3, 15, "three fixed replicas")
        assert scaling_view(gw.admin_url)["reason"] == "fixed (no scaling block)"
        eventually(lambda: len(scaling_view(gw.admin_url)["processes"]) == 3, 10,
                   "the capped replicas gone")
        load.wait_for(load.sent + 50)
    assert load.failed == 0, load.summary()
    assert event_kinds(gw.admin_url).count("reload") == 3


def test_a_reload_naming_a_command_that_cannot_be_found_is_refused_whole(gateway):
    text = scaled_yaml(replicas=1)
    gw = gateway(text)
    eventually(lambda: len(ready(gw.admin_url)) == 1, 15, "the replica ready")
    pid = ready(gw.admin_url)[0]["pid"]

    def broken(data: dict[str, Any]) -> None:
        data["services"]["app"]["process"]["command"] = "no-such-program-here --port {port}"
        data["services"]["app"]["balance"] = "round_robin"

    gw.config_path.write_text(with_changes(text, broken))
    answer = httpx.post(f"{gw.admin_url}/api/reload")
    assert answer.status_code == 400
    assert answer.json()["problems"] == [
        "app: command not found: 'no-such-program-here --port {port}'"]
    assert ready(gw.admin_url)[0]["pid"] == pid and not scaling_view(gw.admin_url)["restarting"]
    services = httpx.get(f"{gw.admin_url}/api/services").json()["services"]
    assert services[0]["balance"] == "p2c"  # the gateway kept its config too
    assert httpx.get(f"{gw.url}/").status_code == 200


@pytest.mark.parametrize("workers", [1, 2])
def test_job_workers_added_by_a_reload_start_and_removed_ones_stop(gateway, tmp_path, workers):
    text = scaled_yaml(replicas=1, workers=workers)
    gw = gateway(text)
    eventually(lambda: len(ready(gw.admin_url)) == 1, 15, "the app replica ready")

    def add_workers(data: dict[str, Any]) -> None:
        data["jobs"] = {"broker": f"sqlite:///{tmp_path}/jobs.db", "workers": {"mail": {
            "command": f"{sys.executable} -c 'import time; time.sleep(60)'", "replicas": 2}}}

    text = _rewrite(gw, text, add_workers)
    eventually(lambda: len(ready(gw.admin_url, "mail")) == 2, 10, "two workers running")
    pids = [p["pid"] for p in ready(gw.admin_url, "mail")]
    _rewrite(gw, text, lambda data: data.pop("jobs"))
    eventually(lambda: "mail" not in httpx.get(f"{gw.admin_url}/api/scaling").json()[
        "services"] and all(process_gone(p) for p in pids), 15, "the workers stopped")
    assert len(ready(gw.admin_url)) == 1
