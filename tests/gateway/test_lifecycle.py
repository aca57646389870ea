"""Processes and lifecycle: SIGTERM drains (the request in flight finishes, new connections are
refused, the process exits 0 within `drain`), and `workers: 2` runs two supervised gateway
processes on one port, replacing one that is killed while requests keep succeeding.

Which process served a request shows in its `X-Request-ID`: generated ids start with a random
prefix per process."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import httpx
import psutil
import pytest

from gateway.stack import Wire, eventually, metric, request, service, surge_yaml, upstream_views
from support.processes import gateway_process_pids, gateway_processes, port_open

pytestmark = pytest.mark.integration

ROUTES = [{"prefix": "/", "service": "app"}]


def refuses_connections(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return False
    except ConnectionRefusedError:
        return True


def test_sigterm_lets_the_request_in_flight_finish_refuses_new_ones_and_exits_0(
        upstreams, gateway):
    (a,) = upstreams(1, names=["a"])
    gw = gateway(surge_yaml({"app": service([a])}, ROUTES, drain="5s"))
    answers: list[httpx.Response] = []
    slow = threading.Thread(target=lambda: answers.append(
        httpx.get(f"{gw.url}/slow?ms=1500", timeout=10)))
    with Wire(gw.listen) as idle:
        idle.send(request("GET", "/name"))
        assert idle.answer().body == b"a"   # now an idle keep-alive connection
        slow.start()
        eventually(lambda: upstream_views(gw.admin_url, "app")[a.address]["inflight"] == 1,
                   what="the slow request in flight")
        stopped_at = time.monotonic()
        gw.send_signal(signal.SIGTERM)
        assert idle.closed_by_peer(within=2.0), "an idle connection stays open while draining"
    eventually(lambda: refuses_connections(gw.listen), timeout=2.0,
               what="new connections refused")
    assert slow.is_alive(), "refused only after the drain ended: the check proves nothing"
    slow.join(5)
    assert answers and answers[0].status_code == 200 and answers[0].text == "slow"
    assert gw.proc.wait(timeout=5) == 0
    assert time.monotonic() - stopped_at < 5.0, "it waited for the whole drain period"


def serving_processes(url: str, requests: int) -> set[str]:
    """The process prefixes of the ids of `requests` answers, each on a new connection."""
    prefixes = set()
    for _ in range(requests):
        response = httpx.get(f"{url}/name", headers={"Connection": "close"}, timeout=5)
        assert response.status_code == 200, response.text
        prefixes.add(response.headers["x-request-id"].rsplit("-", 1)[0])
    return prefixes


def gather(prefixes: set[str], url: str) -> set[str]:
    """`prefixes` with those of 20 more answers added."""
    prefixes |= serving_processes(url, 20)
    return prefixes


def test_two_workers_both_serve_and_a_killed_one_is_replaced(upstreams, gateway):
    (a,) = upstreams(1, names=["a"])
    gw = gateway(surge_yaml({"app": service([a])}, ROUTES, workers=2))
    eventually(lambda: len(gateway_process_pids(gw.pid)) == 2, what="two worker processes")
    pids = gateway_process_pids(gw.pid)
    seen: set[str] = set()
    eventually(lambda: len(gather(seen, gw.url)) == 2, what="answers from both workers")
    eventually(lambda: all(metric(gw.admin_url, "surge_requests_total", worker=w) > 0
                           for w in ("0", "1")), what="admin metrics labelled by worker")

    victim = min(pids)
    os.kill(victim, signal.SIGKILL)
    # The survivor serves meanwhile with no errors (the replacement may join within these 30).
    assert serving_processes(gw.url, 30)
    eventually(lambda: (len(gateway_process_pids(gw.pid)) == 2
                        and victim not in gateway_process_pids(gw.pid)),
               what="the killed gateway process replaced")
    after: set[str] = set()
    eventually(lambda: bool(gather(after, gw.url) - seen), what="answers from the replacement")


def kill_once_started(gw, index: int) -> int:
    """Wait for gateway process `index` to answer on its admin port, SIGKILL it; its pid."""
    eventually(lambda: index in gateway_processes(gw.pid), timeout=15, what=f"process {index}")
    pid, port = gateway_processes(gw.pid)[index]
    eventually(lambda: port_open("127.0.0.1", port), timeout=15, what=f"process {index} started")
    os.kill(pid, signal.SIGKILL)
    return pid


def test_a_crash_looping_gateway_process_does_not_stop_the_master_reading_the_other(
        upstreams, gateway):
    (a,) = upstreams(1, names=["a"])
    gw = gateway(surge_yaml({"app": service([a])}, ROUTES, workers=2))
    for _ in range(3):  # rapid failures: the backoff doubles, 0.5 s, 1 s, 2 s, then 4 s
        killed = kill_once_started(gw, 1)
        eventually(lambda k=killed: gateway_processes(gw.pid).get(1, (k,))[0] != k,
                   timeout=15, what="gateway process 1 replaced")
    eventually(lambda: 0 in gateway_processes(gw.pid), what="process 0")
    before = metric(gw.admin_url, "surge_requests_total", worker="0")
    killed = kill_once_started(gw, 1)  # the fourth: replaced only 4 s from now
    eventually(lambda: killed not in {c.pid for c in psutil.Process(gw.pid).children()},
               what="the master has seen it exit (reaped it)")
    assert len(serving_processes(gw.url, 10)) == 1  # process 0 alone
    # The master reads process 0 once a second meanwhile (its old loop slept out the backoff).
    eventually(lambda: metric(gw.admin_url, "surge_requests_total", worker="0") >= before + 10,
               timeout=3.0, what="process 0's requests counted during process 1's backoff")
    assert 1 not in gateway_processes(gw.pid), "replaced already: no backoff was being waited out"
