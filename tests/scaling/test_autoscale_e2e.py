"""Autoscaling end to end: a real `surge up` running the quickstart app under the supervisor,
CPU-bound load on `/work?ms=20` -> the autoscaler adds replicas (from CPU or the queue); the
load stops -> after the (short) scale-down window it removes them again, one per step; no
request fails throughout."""

# ruff: noqa: F811  (test parameters named after the imported `gateway` fixture)
from __future__ import annotations

import pytest

from gateway.stack import eventually, metric
from scaling.scaled_stack import scaled_yaml, scaling_view
from support.fixtures import gateway  # noqa: F401  (the fixture, used by name below)
from support.processes import LoadLoop

pytestmark = pytest.mark.integration

# In-flight requests as well as CPU: on a machine shared with other work a busy replica may get
# well under half a core (its CPU % stays low although requests queue at it), and only the
# queue then shows that it is the bottleneck.
SCALING = {
    "min": 1, "max": 3, "target": {"cpu_percent": 50, "inflight_per_replica": 2},
    "scale_down": {"stabilization": "3s", "max_step": 1},
}


def test_cpu_bound_load_adds_replicas_and_they_go_after_the_window_with_no_failed_request(
        gateway):
    gw = gateway(scaled_yaml(replicas=1, scaling=SCALING))
    eventually(lambda: scaling_view(gw.admin_url)["processes"][0]["state"] == "ready", 15,
               "the first replica ready")
    with LoadLoop(f"{gw.url}/work?ms=20", concurrency=4, timeout=10.0) as load:
        eventually(lambda: scaling_view(gw.admin_url)["replicas"] >= 2, 20, "a scale-up")
        up = next(e for e in scaling_view(gw.admin_url)["events"] if e["kind"] == "scale_up")
        assert up["metrics"].get("cpu_percent", 0) > 50 or up["metrics"]["inflight"] > 2, up
        eventually(lambda: sum(p["state"] == "ready"
                               for p in scaling_view(gw.admin_url)["processes"]) >= 2, 15,
                   "the new replicas serving")
        load.wait_for(load.sent + 50, timeout=15)
    peak = scaling_view(gw.admin_url)["replicas"]
    eventually(lambda: scaling_view(gw.admin_url)["replicas"] == 1, 25, "back to one replica")
    assert load.failed == 0, load.summary()
    view = scaling_view(gw.admin_url)
    downs = [e for e in view["events"] if e["kind"] == "scale_down"]
    assert len(downs) == peak - 1  # one replica per step (max_step: 1)
    assert all(e["replicas_from"] - e["replicas_to"] == 1 for e in downs)
    assert view["last_decision"]["metrics"]["cpu_percent"] < 50
    assert metric(gw.admin_url, "surge_scaling_events_total", service="app",
                  kind="scale_up") >= 1
