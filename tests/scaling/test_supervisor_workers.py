"""`gateway.workers: 2` with replicas that surge runs, with real processes: the master runs the
one supervisor and the one autoscaler, every worker routes to every ready replica, a reload
rolls a changed env out through both workers, replicas scale up and back down under load on
the in-flight counts and latency summed over the workers, with no failed request, and a
worker killed and replaced routes to the running replicas at once."""

# ruff: noqa: F811  (test parameters named after the imported `gateway` fixture)
from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from gateway.stack import eventually, metric, with_changes
from scaling.scaled_stack import event_kinds, ready, scaled_yaml, scaling_view
from support.fixtures import gateway  # noqa: F401  (the fixture, used by name below)
from support.processes import LoadLoop, gateway_process_pids

pytestmark = pytest.mark.integration


def _ports_served(url: str, requests: int = 40) -> set[int]:
    """The replica ports that answer, over fresh connections (spread over the workers), eight
    at a time. The services here balance round robin: P2C rightly keeps picking the replica
    with the lower latency average, so a replica whose first answer was slow (a cold app on
    a busy machine) could get none of 40 requests, and these tests are about membership."""
    def port(_: int) -> int:
        return httpx.get(f"{url}/", headers={"Connection": "close"}).json().get("port")
    with ThreadPoolExecutor(8) as pool:
        return set(pool.map(port, range(requests)))


def _env(value: str) -> Any:
    def change(data: dict[str, Any]) -> None:
        data["services"]["app"]["process"]["env"] = {"REPLICA_NAME": value}
    return change


def test_the_master_runs_the_replicas_every_worker_routes_to_them_and_reload_rolls_them(
        gateway):
    text = with_changes(scaled_yaml(replicas=2, workers=2, balance="round_robin"), _env("v1"))
    gw = gateway(text)
    eventually(lambda: len(ready(gw.admin_url)) == 2, 20, "two replicas ready")
    assert _ports_served(gw.url) == {int(p["address"].rpartition(":")[2])
                                     for p in ready(gw.admin_url)}
    assert metric(gw.admin_url, "surge_replicas", service="app", state="ready") == 2
    with LoadLoop(f"{gw.url}/", concurrency=4, rate=200) as load:
        load.wait_for(100)
        gw.config_path.write_text(with_changes(text, _env("v2")))
        gw.reload()
        eventually(lambda: "restarted" in event_kinds(gw.admin_url), 30, "rolled out")
        load.wait_for(load.sent + 100)
    assert load.failed == 0, load.summary()
    assert {httpx.get(f"{gw.url}/", headers={"Connection": "close"}).json()["replica"]
            for _ in range(10)} == {"v2"}
    assert gw.terminate(timeout=20) == 0


def test_replicas_scale_up_and_down_on_load_summed_over_two_workers_with_no_failure(gateway):
    scaling = {"min": 1, "max": 3, "target": {"inflight_per_replica": 2},
               "scale_up": {"max_step": 2},
               "scale_down": {"stabilization": "2s", "max_step": 1}}
    gw = gateway(scaled_yaml(replicas=1, workers=2, scaling=scaling))
    eventually(lambda: len(ready(gw.admin_url)) == 1, 20, "one replica ready")
    with LoadLoop(f"{gw.url}/work?ms=100", concurrency=8) as busy:
        eventually(lambda: len(ready(gw.admin_url)) == 3, 30, "scaled up to max")
        # Both workers' traffic goes into the decisions: in-flight, rate and p95 over both.
        eventually(lambda: _measured(gw.admin_url), 10, "rate and p95 of both workers")
        busy.wait_for(busy.sent + 50)
    assert busy.failed == 0, busy.summary()
    up = next(e for e in scaling_view(gw.admin_url)["events"] if e["kind"] == "scale_up")
    assert up["metrics"]["inflight"] > 2
    with LoadLoop(f"{gw.url}/", concurrency=2, rate=50) as light:
        eventually(lambda: [p["state"] for p in scaling_view(gw.admin_url)["processes"]]
                   == ["ready"], 30, "scaled back in to one replica, the others stopped")
        light.wait_for(light.sent + 50)
    assert light.failed == 0, light.summary()
    assert event_kinds(gw.admin_url).count("stopped") == 2


def _measured(admin_url: str) -> bool:
    metrics = (scaling_view(admin_url)["last_decision"] or {}).get("metrics", {})
    return metrics.get("request_rate", 0) > 0 and metrics.get("p95_latency", 0) >= 0.1


def test_a_replaced_worker_gets_the_running_replicas_at_once(gateway):
    gw = gateway(scaled_yaml(replicas=2, workers=2, balance="round_robin"))
    eventually(lambda: len(ready(gw.admin_url)) == 2, 20, "two replicas ready")
    ports = {int(p["address"].rpartition(":")[2]) for p in ready(gw.admin_url)}
    before = gateway_process_pids(gw.pid)
    os.kill(min(before), signal.SIGKILL)
    eventually(lambda: len(gateway_process_pids(gw.pid) - before) == 1, 15, "the worker replaced")
    eventually(lambda: _ports_served(gw.url, 40) == ports, 15,
               "every worker routing to both replicas")
    with LoadLoop(f"{gw.url}/", concurrency=4, rate=200, headers={"Connection": "close"}) as load:
        load.wait_for(200)
    assert load.failed == 0, load.summary()
    assert {p["name"] for p in ready(gw.admin_url)} == {"app-1", "app-2"}  # none restarted
