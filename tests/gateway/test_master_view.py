"""The master's merged view of its workers' services (a pure unit test: no process runs)."""

from __future__ import annotations

from pathlib import Path

from surge.config.models import Config
from surge.gateway.workers import Master


def _service(name: str, *inflight: tuple[str, int]) -> dict:
    return {"name": name, "upstreams": [{"address": a, "inflight": n} for a, n in inflight]}


def test_in_flight_counts_are_summed_by_service_and_address_whatever_the_order():
    master = Master(Config.model_validate({}), Path("surge.yaml"), [1, 2])
    master.workers[0].view = [_service("api", ("a:1", 1), ("a:2", 2)), _service("web", ("w:1", 3))]
    # Worker 1 lists the services in another order, one upstream fewer, and a new service
    # it took from a reload worker 0 has not answered yet.
    master.workers[1].view = [_service("new", ("n:1", 9)), _service("web", ("w:1", 4)),
                              _service("api", ("a:2", 5))]
    merged = {s["name"]: {u["address"]: u["inflight"] for u in s["upstreams"]}
              for s in master.services_view()}
    assert merged == {"api": {"a:1": 1, "a:2": 7}, "web": {"w:1": 7}}


def test_no_worker_heard_from_yet_is_an_empty_view():
    assert Master(Config.model_validate({}), Path("surge.yaml"), [1]).services_view() == []
