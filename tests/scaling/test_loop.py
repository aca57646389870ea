"""The autoscaling loop: what it reads from the gateway's counters (request rate and p95 from
histogram deltas), and a worker group scaled on a real broker's queue depth with real worker
processes: jobs waiting -> workers started, queue empty -> scaled to zero, each decision kept
with its inputs and shown in the view."""

from __future__ import annotations

import asyncio
import sys
import time

import psutil
import pytest

from surge.jobs.queue import Queue
from surge.observe.metrics import BUCKETS, GatewayStats
from surge.scaling.groups import GroupSpec
from surge.scaling.loop import ScalingLoop
from surge.scaling.membership import NoGateway
from surge.scaling.metrics import ProcessTree, ServiceTraffic, histogram_quantile
from surge.scaling.spec import PolicySpec, Rule, Step, Targets
from surge.scaling.supervisor import Supervisor

SLEEPER = f"{sys.executable} -c 'import time; time.sleep(60)'"


def _counts(**by_bound: int) -> list[int]:
    counts = [0] * (len(BUCKETS) + 1)
    for bound, count in by_bound.items():
        counts[BUCKETS.index(float(bound.removeprefix("le_").replace("_", ".")))] = count
    return counts


def test_p95_is_interpolated_inside_its_bucket_as_prometheus_does():
    # 100 requests: 90 under 10 ms, 10 between 50 and 100 ms -> p95 half way into that bucket.
    assert histogram_quantile(_counts(le_0_01=90, le_0_1=10), 0.95) == pytest.approx(0.075)
    assert histogram_quantile(_counts(le_0_001=1), 0.95) == pytest.approx(0.00095)
    slow = [0] * len(BUCKETS) + [5]  # all beyond the last bound: report that bound
    assert histogram_quantile(slow, 0.95) == BUCKETS[-1]


def test_service_traffic_is_the_delta_of_every_route_to_the_service_since_the_last_reading():
    stats = GatewayStats()
    api, admin, other = stats.route("/api/", "api"), stats.route("/admin/", "api"), \
        stats.route("/", "web")
    traffic = ServiceTraffic(stats, "api")
    for _ in range(50):
        api.observe(200, 0.004)
    assert traffic.sample(now=10.0) == (None, None)  # the first reading only primes
    for _ in range(18):
        api.observe(200, 0.004)
    admin.observe(200, 0.3)
    admin.observe(500, 0.3)
    other.observe(200, 5.0)
    rate, p95 = traffic.sample(now=12.0)
    assert rate == 10.0  # 20 requests in 2 s; the other service's route does not count
    assert 0.25 < p95 <= 0.5
    assert traffic.sample(now=14.0) == (0.0, None)  # nothing finished: no latency to report


def test_a_process_tree_reports_cpu_from_its_second_reading_and_the_rss_of_all_members():
    tree = ProcessTree(psutil.Process().pid)
    cpu, rss = tree.sample()
    assert cpu is None and rss > 10_000_000
    sum(range(2_000_000))
    cpu, _ = tree.sample()
    assert cpu is not None and cpu >= 0.0


async def test_a_worker_group_scales_up_on_queue_depth_and_down_to_zero_when_it_empties():
    queue = Queue("memory://")
    for _ in range(25):
        await queue.enqueue("send_email", _queue="default")
    supervisor = Supervisor(NoGateway(), [GroupSpec("mail", SLEEPER, replicas=0, gateway=False)],
                            grace=2.0)
    scaling = PolicySpec(min=0, max=4, targets=Targets(queue_depth_per_replica=10),
                         scale_up=Rule(0.0, Step(pods=4)),
                         scale_down=Rule(0.0, Step(percent=100)))
    loop = ScalingLoop(supervisor, {"mail": scaling}, broker=queue.broker,
                       queues=("default",))
    try:
        decisions = await loop.tick(now=1000.0)
        assert decisions["mail"].desired == 3  # ceil(25 / 10), from zero in one step
        assert supervisor.count("mail") == 3
        for _ in range(100):  # spawning takes a moment on a busy machine
            processes = loop.view()["services"]["mail"]["processes"]
            if [p["state"] for p in processes] == ["ready"] * 3:
                break
            await asyncio.sleep(0.05)
        assert [p["state"] for p in processes] == ["ready"] * 3
        assert all(psutil.pid_exists(p["pid"]) for p in processes)

        # A worker takes every waiting job: nothing is queued any more.
        await queue.broker.claim(["default"], "w1", limit=25, lease=60.0, now=time.time())
        decisions = await loop.tick(now=1002.0)
        assert decisions["mail"].desired == 0
        assert "scale to zero" in decisions["mail"].reason
        view = loop.view()["services"]["mail"]
        assert view["replicas"] == 0 and view["desired"] == 0
        assert view["last_decision"]["metrics"]["queue_depth"] == 0.0
        assert [e["kind"] for e in view["events"] if e["kind"].startswith("scale")] == [
            "scale_up", "scale_down"]
    finally:
        await loop.stop()
    assert supervisor.groups["mail"].replicas == {}
