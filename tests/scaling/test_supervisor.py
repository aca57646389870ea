"""The supervisor with real processes behind a real `surge up`: replicas of the quickstart app
start on their own ports, join the service only once healthy and serve; a replica killed with
SIGKILL under load is replaced while no GET fails; a command that keeps crashing backs off
longer each time and is reported; scale-in and a rolling restart drain with no failed request;
stopping surge stops every replica."""

# ruff: noqa: F811  (test parameters named after the imported `gateway` fixture)
from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import pytest
import yaml

from gateway.stack import eventually, metric
from scaling.scaled_stack import event_kinds, ready, scaled_yaml, scaling_view
from support.fixtures import gateway  # noqa: F401  (the fixture, used by name below)
from support.processes import LoadLoop, process_gone

pytestmark = pytest.mark.integration


def test_replicas_start_on_their_own_ports_join_when_healthy_serve_and_stop_with_surge(gateway):
    gw = gateway(scaled_yaml(replicas=2, balance="round_robin"))
    eventually(lambda: len(ready(gw.admin_url)) == 2, 15, "two replicas ready")
    replicas = ready(gw.admin_url)
    addresses = {p["address"] for p in replicas}
    upstreams = httpx.get(f"{gw.admin_url}/api/services/app").json()["upstreams"]
    assert {u["address"] for u in upstreams} == addresses
    ports = {httpx.get(f"{gw.url}/").json()["port"] for _ in range(4)}
    assert {f"127.0.0.1:{port}" for port in ports} == addresses
    kinds = event_kinds(gw.admin_url)
    assert kinds.count("started") == 2 and kinds.count("ready") == 2
    assert metric(gw.admin_url, "surge_replicas", service="app", state="ready") == 2
    eventually(lambda: metric(gw.admin_url, "surge_replica_rss_bytes", service="app") > 0, 5,
               "the replicas' memory sampled")
    pids = [p["pid"] for p in replicas]
    assert gw.terminate(timeout=15) == 0
    assert all(process_gone(pid) for pid in pids)


def test_a_replica_killed_with_sigkill_under_load_is_replaced_and_no_get_fails(gateway):
    gw = gateway(scaled_yaml(replicas=2))
    eventually(lambda: len(ready(gw.admin_url)) == 2, 15, "two replicas ready")
    victim = ready(gw.admin_url)[0]
    with LoadLoop(f"{gw.url}/", concurrency=4, rate=200) as load:
        load.wait_for(100)
        os.kill(victim["pid"], signal.SIGKILL)
        eventually(lambda: any(p["name"] == victim["name"] and p["starts"] == 2
                               for p in ready(gw.admin_url)), 15, "the replica replaced")
        load.wait_for(load.sent + 200)
    assert load.failed == 0, load.summary()
    replaced = next(p for p in ready(gw.admin_url) if p["name"] == victim["name"])
    assert replaced["pid"] != victim["pid"] and replaced["address"] != victim["address"]
    upstreams = httpx.get(f"{gw.admin_url}/api/services/app").json()["upstreams"]
    assert victim["address"] not in {u["address"] for u in upstreams}
    assert "exited" in event_kinds(gw.admin_url)


def test_a_crash_looping_command_backs_off_longer_each_time_and_is_reported(gateway):
    crash = f"{sys.executable} -c 'import sys; sys.exit(3)' {{port}}"
    gw = gateway(scaled_yaml(crash, replicas=1))
    eventually(lambda: scaling_view(gw.admin_url)["crash_looping"], 10, "a crash loop")
    delays = []
    for _ in range(2):
        failures = scaling_view(gw.admin_url)["processes"][0]["failures"]
        eventually(lambda f=failures: scaling_view(gw.admin_url)["processes"][0]["failures"]
                   > f, 10, "one more failure")
        delays.append(scaling_view(gw.admin_url)["processes"][0]["restart_in"])
    process = scaling_view(gw.admin_url)["processes"][0]
    assert process["state"] == "backoff" and process["exit_code"] == 3
    assert delays[1] > delays[0] >= 1.0
    # Backoff 0.5 + 1 + 2 (+ 4) s: a handful of starts, not a busy loop.
    assert process["starts"] <= 6
    assert metric(gw.admin_url, "surge_replica_crash_loop", service="app") == 1
    assert metric(gw.admin_url, "surge_scaling_events_total", service="app",
                  kind="crash_loop") >= 1
    assert httpx.get(f"{gw.url}/").status_code == 503  # no replica, and surge still answers


def test_scale_in_drains_each_replica_before_stopping_it_and_no_request_fails(gateway):
    scaling = {"min": 1, "max": 3, "target": {"cpu_percent": 80},
               "scale_down": {"stabilization": "1s", "max_step": 1}}
    gw = gateway(scaled_yaml(replicas=3, scaling=scaling))
    eventually(lambda: len(ready(gw.admin_url)) == 3, 15, "three replicas ready")
    with LoadLoop(f"{gw.url}/work?ms=2", concurrency=4, rate=100) as load:
        eventually(lambda: scaling_view(gw.admin_url)["replicas"] == 1
                   and len(scaling_view(gw.admin_url)["processes"]) == 1, 20,
                   "scaled in to one replica")
        load.wait_for(load.sent + 50)
    assert load.failed == 0, load.summary()
    kinds = event_kinds(gw.admin_url)
    assert kinds.count("scale_down") == 2 and kinds.count("stopped") == 2
    left = ready(gw.admin_url)[0]["address"]
    eventually(lambda: [u["address"] for u in httpx.get(
        f"{gw.admin_url}/api/services/app").json()["upstreams"]] == [left], 5,
        "the drained replicas removed from the service")


def test_surge_restart_replaces_every_replica_one_at_a_time_with_no_failed_request(gateway):
    gw = gateway(scaled_yaml(replicas=2))
    eventually(lambda: len(ready(gw.admin_url)) == 2, 15, "two replicas ready")
    before = {p["name"] for p in ready(gw.admin_url)}
    with LoadLoop(f"{gw.url}/", concurrency=4, rate=200) as load:
        load.wait_for(50)
        done = subprocess.run([sys.executable, "-m", "surge.cli", "restart", "app",
                               "--admin", gw.admin], capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        load.wait_for(load.sent + 100)
    assert load.failed == 0, load.summary()
    after = scaling_view(gw.admin_url)
    assert after["replicas"] == 2 and not after["restarting"]
    assert not before & {p["name"] for p in ready(gw.admin_url)}
    assert "restarted" in event_kinds(gw.admin_url)


def test_job_workers_run_under_surge_up_with_their_output_in_its_log(gateway, tmp_path):
    worker = (f"{sys.executable} -c 'import os, time; "
              f"print(\"worker\", os.environ[\"SURGE_REPLICA\"], \"up\", flush=True); "
              f"time.sleep(60)'")
    text = scaled_yaml(replicas=1) + yaml.safe_dump({"jobs": {
        "broker": f"sqlite:///{tmp_path}/jobs.db",
        "workers": {"mail": {"command": worker, "replicas": 2}}}})
    gw = gateway(text)
    eventually(lambda: [p["state"] for p in scaling_view(gw.admin_url, "mail")["processes"]]
               == ["ready", "ready"], 10, "two workers running")
    assert scaling_view(gw.admin_url, "mail")["kind"] == "worker"
    eventually(lambda: "[mail-2] worker mail-2 up" in gw.stderr_path.read_text(), 5,
               "the worker's output logged under its name")
