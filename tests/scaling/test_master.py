"""How the master of `workers: N` merges what its workers report about supervised replicas
(pure, no processes): an upstream is healthy only when every worker says so, draining when one
does, its in-flight requests summed; latency histograms add up over the workers, and a
replaced worker's counts, which restart from zero, never make the merged ones go back."""

from __future__ import annotations

from surge.observe.metrics import BUCKETS
from surge.scaling.master import MERGED_ROUTE, MasterMembership, merge_upstreams
from surge.scaling.membership import UpstreamState
from surge.scaling.metrics import ServiceTraffic


def test_an_upstream_is_healthy_only_when_every_worker_says_so_and_its_inflight_is_summed():
    merged = merge_upstreams([
        {"a": [True, False, 3], "b": [True, False, 1], "c": [True, True, 2]},
        {"a": [True, False, 4], "b": [False, False, 0]},
    ])
    assert merged == {
        "a": UpstreamState(healthy=True, draining=False, inflight=7),
        "b": UpstreamState(healthy=False, draining=False, inflight=1),
        # Drained and removed by one worker, still draining in the other.
        "c": UpstreamState(healthy=False, draining=True, inflight=2),
    }
    assert merge_upstreams([]) == {}


def _state(pid: int, **counts: int) -> dict:
    buckets = [0] * (len(BUCKETS) + 1)
    for index, count in counts.items():
        buckets[int(index.removeprefix("b"))] = count
    return {"pid": pid, "buckets": {"app": buckets}}


def test_histograms_add_up_over_workers_and_survive_a_replaced_worker():
    membership = MasterMembership(master=None)
    traffic = ServiceTraffic(membership.stats, "app")  # as the autoscaler reads them
    membership.count(7001, _state(10, b1=5))
    membership.count(7002, _state(20, b1=3, b9=1))
    assert traffic.sample(now=0.0) == (None, None)
    membership.count(7001, _state(10, b1=9))          # 4 more on the first worker
    membership.count(7002, _state(21, b1=2))          # replaced: its successor served 2
    rate, p95 = traffic.sample(now=2.0)
    assert rate == 3.0                                 # (4 + 2) requests in 2 s
    assert p95 is not None and p95 <= BUCKETS[1]
    buckets = membership.merged.route(MERGED_ROUTE, "app").buckets
    assert buckets[1] == 5 + 3 + 4 + 2 and buckets[9] == 1
    membership.count(7002, _state(21, b1=2))          # nothing new: nothing added
    assert traffic.sample(now=4.0) == (0.0, None)
