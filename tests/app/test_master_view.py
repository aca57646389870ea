"""The master of `gateway.workers: N`: its merged view of its gateway processes' services (pure:
no process runs), and how it keeps them running through the lifecycle replicas share."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from surge.app.workers import GatewayProcess, Master
from surge.config.models import Config
from surge.errors import IllegalTransition
from surge.scaling.lifecycle import ProcessState, restart_delay

S = ProcessState


def _service(name: str, *inflight: tuple[str, int]) -> dict:
    return {"name": name, "upstreams": [{"address": a, "inflight": n} for a, n in inflight]}


def test_in_flight_counts_are_summed_by_service_and_address_whatever_the_order():
    master = Master(Config.model_validate({}), Path("surge.yaml"), [1, 2])
    master.processes[0].view = [_service("api", ("a:1", 1), ("a:2", 2)),
                                _service("web", ("w:1", 3))]
    # Gateway process 1 lists the services in another order, one upstream fewer, and a new
    # service it took from a reload process 0 has not answered yet.
    master.processes[1].view = [_service("new", ("n:1", 9)), _service("web", ("w:1", 4)),
                                _service("api", ("a:2", 5))]
    merged = {s["name"]: {u["address"]: u["inflight"] for u in s["upstreams"]}
              for s in master.services_view()}
    assert merged == {"api": {"a:1": 1, "a:2": 7}, "web": {"w:1": 7}}


def test_no_gateway_process_heard_from_yet_is_an_empty_view():
    assert Master(Config.model_validate({}), Path("surge.yaml"), [1]).services_view() == []


async def _dying(code: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, "-c", f"raise SystemExit({code})")


async def test_a_gateway_process_that_keeps_dying_is_replaced_after_the_shared_backoff():
    """A real process that exits at once, and replacements that do too (no gateway runs):
    the master moves it through the lifecycle replicas share, waiting the shared backoff."""
    master = Master(Config.model_validate({}), Path("surge.yaml"), [1])
    gateway_process = master.processes[0]
    seen = []

    async def start(process: GatewayProcess) -> None:
        seen.append((process.state, process.failures, process.exit_code,
                     process.restart_at - process.changed_at))
        process.child = await _dying(4)
        process.begin(process.child.pid, master.now())
        if len(seen) == 2:
            master.stopping = True  # the next exit is asked for

    master.start = start  # type: ignore[method-assign]
    gateway_process.child = await _dying(3)
    gateway_process.begin(gateway_process.child.pid, master.now())
    await asyncio.wait_for(master.keep(gateway_process), 10.0)
    assert seen == [(S.BACKOFF, 1, 3, restart_delay(1)), (S.BACKOFF, 2, 4, restart_delay(2))]
    assert gateway_process.starts == 3


def test_a_gateway_process_refuses_a_move_outside_the_shared_table():
    gateway_process = GatewayProcess(index=2, path=Path("surge.yaml"), admin_port=1)
    with pytest.raises(IllegalTransition, match="gateway process 2: starting -> backoff"):
        gateway_process.move(S.BACKOFF, 1.0)
