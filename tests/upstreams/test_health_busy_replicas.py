"""Active health checks of CPU-bound replicas under load, with real processes: a replica whose
event loop is busy with queued requests answers `/healthz` after the check's timeout, yet it
serves live traffic fine. Those late checks are excused (passive evidence wins), so no busy
replica is taken out and no request gets 503 no_healthy_upstream. A replica that really stops
answering (SIGSTOP: the kernel still accepts its connections, nothing answers) is still taken
out by its timed-out checks once its last live answer is older than interval + timeout."""

# ruff: noqa: F811  (test parameters named after the imported `gateway` fixture)
from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.stack import eventually, failed_count, metric, service, surge_yaml, upstream_views
from scaling.scaled_stack import QUICKSTART_APP
from support.fixtures import gateway  # noqa: F401  (the fixture, used by name below)
from support.load import LoadLoop
from support.processes import ManagedProcess, free_ports, wait_for_port

pytestmark = pytest.mark.integration

# Checks far shorter than the queueing delay a busy replica builds (8 clients over 2 replicas,
# 40 ms of CPU per request: ~120 ms in the queue), and quick to fall: the old rule ejected
# both replicas within half a second.
HEALTH = {"path": "/healthz", "interval": "200ms", "timeout": "60ms", "rise": 1, "fall": 2}
WORK = "/work?ms=40"


@pytest.fixture
def busy_replicas(tmp_path: Path) -> Iterator[dict[str, ManagedProcess]]:
    """Two replicas of the quickstart app (by address), whose `/work` burns CPU on the event
    loop."""
    replicas = {}
    for port in free_ports(2):
        replica = ManagedProcess(f"replica-{port}", [sys.executable, str(QUICKSTART_APP),
                                                     "--port", str(port)], tmp_path)
        replica.spawn()
        replicas[f"127.0.0.1:{port}"] = replica
    for address in replicas:
        wait_for_port("127.0.0.1", int(address.rpartition(":")[2]))
    yield replicas
    for replica in replicas.values():
        replica.send_signal(signal.SIGCONT)
        replica.terminate()


def _start(gateway, addresses):
    gw = gateway(surge_yaml({"app": service(addresses, health=HEALTH)},
                            [{"prefix": "/", "service": "app"}]))
    eventually(lambda: all(u["healthy"] for u in upstream_views(gw.admin_url, "app").values()),
               what="both replicas healthy")
    return gw


def test_busy_replicas_that_answer_checks_late_keep_their_traffic(busy_replicas, gateway):
    gw = _start(gateway, busy_replicas)
    with LoadLoop(f"{gw.url}{WORK}", concurrency=8, timeout=10.0) as load:
        load.wait_for(300, timeout=30)
    excused = metric(gw.admin_url, "surge_health_checks_excused_total", service="app")
    assert excused > 0, "no check was late: the replicas were not busy enough to test this"
    assert load.failed == 0, load.summary()
    assert failed_count(gw.admin_url, "no_healthy_upstream") == 0
    assert all(u["healthy"] for u in upstream_views(gw.admin_url, "app").values())


def test_a_replica_that_stops_answering_is_still_taken_out_by_its_late_checks(
        busy_replicas, gateway):
    gw = _start(gateway, busy_replicas)
    healthy, hung = busy_replicas
    with LoadLoop(f"{gw.url}{WORK}", concurrency=4, timeout=10.0) as load:
        load.wait_for(100, timeout=30)
        busy_replicas[hung].send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        eventually(lambda: not upstream_views(gw.admin_url, "app")[hung]["healthy"], 5,
                   "the hung replica unhealthy")
        took = time.monotonic() - stopped
        # Its last live answer excuses checks for interval + timeout (0.26 s); then `fall`
        # timed-out checks, one per interval (0.4 s); the rest is scheduling on a busy machine.
        assert took < 1.5, f"taken out after {took:.2f}s"
        assert upstream_views(gw.admin_url, "app")[healthy]["healthy"]
        busy_replicas[hung].send_signal(signal.SIGCONT)
