"""Rate limiting in gateways that share Redis (`state: redis://...`): 8 gateway processes and 50
concurrent clients hammering one API key admit exactly the limit, and a Redis that stops
mid-run makes requests follow `on_store_error` until it is back, then limits resume."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from gateway.stack import metric, service, surge_yaml, with_changes
from ratelimit.conftest import throwaway_redis  # noqa: F401  (a fixture, used by name)
from support.processes import GatewayProcess, UpstreamProcess, free_port
from surge.ratelimit.keys import open_key_store
from surge.ratelimit.redis_store import EPOCH

pytestmark = pytest.mark.integration

GATEWAYS, CLIENTS, REQUESTS = 8, 50, 6


def shared_yaml(fleet: list[UpstreamProcess], state: str, **rate_limits: Any) -> str:
    def add(data: dict[str, Any]) -> None:
        data["state"] = state
        data["rate_limits"] = {"key": "header:X-Client", **rate_limits}
    return with_changes(surge_yaml({"app": service(fleet)},
                                   [{"prefix": "/", "service": "app", "rate_limit": True}]), add)


def start_gateways(texts: list[str], tmp_path: Path) -> list[GatewayProcess]:
    """Start them all at once (each `surge up` takes a while on a busy machine), then wait."""
    started = []
    try:
        for index, text in enumerate(texts):
            path = tmp_path / f"gateway-{index}.yaml"
            path.write_text(text)
            process = GatewayProcess(path, tmp_path, label=f"gateway-{index}")
            process.spawn()
            started.append(process)
        for process in started:
            process.wait_ready(30.0)
    except BaseException:
        for process in started:
            process.terminate()
        raise
    return started


async def hammer(urls: list[str], key: str) -> list[int]:
    """CLIENTS concurrent clients, client i on gateway i % len(urls), REQUESTS each."""
    async def client(url: str) -> list[int]:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            return [(await http.get("/name", headers={"X-API-Key": key})).status_code
                    for _ in range(REQUESTS)]
    results = await asyncio.gather(*(client(urls[i % len(urls)]) for i in range(CLIENTS)))
    return [status for statuses in results for status in statuses]


def redis_seconds(url: str) -> float:
    """Redis' clock, counted from the epoch the store's windows are aligned on."""
    client = redis.Redis.from_url(url)
    seconds, micros = client.time()
    client.close()
    return seconds - EPOCH + micros / 1e6


def allowed(gateways: list[GatewayProcess]) -> float:
    return sum(metric(g.admin_url, "surge_ratelimit_decisions_total", plan="hundred",
                      outcome="allowed") for g in gateways)


@pytest.mark.parametrize(("algorithm", "rate"), [("fixed_window", "100/10s"),
                                                 ("gcra", "100/hour")])
def test_eight_gateways_on_one_redis_admit_exactly_the_limit(redis_url, upstreams, tmp_path,
                                                             algorithm, rate):
    # GCRA refills continuously (100/10s gives one more every 100 ms of the run), so it is
    # checked at 100/hour; the fixed window at 100/10s, inside one aligned 10 s window (a run
    # that a loaded machine stretches across a boundary is run again in the next window).
    fleet = upstreams(2)
    text = shared_yaml(fleet, redis_url, algorithm=algorithm, plans={"anonymous": ["1/minute"],
                                                                     "hundred": [rate]})
    keys = open_key_store(redis_url)
    raw, _ = keys.create("hammer", "hundred")
    keys.close()
    gateways = start_gateways([text] + [with_changes(text, _new_ports)
                                        for _ in range(GATEWAYS - 1)], tmp_path)
    try:
        for _attempt in range(3):
            window = redis_seconds(redis_url) // 10
            if algorithm == "fixed_window" and redis_seconds(redis_url) % 10 > 4:
                time.sleep(10.1 - redis_seconds(redis_url) % 10)  # start as a window opens
                window += 1
            before = allowed(gateways)
            statuses = asyncio.run(hammer([g.url for g in gateways], raw))
            admitted = allowed(gateways) - before
            if algorithm != "fixed_window" or redis_seconds(redis_url) // 10 == window:
                break
    finally:
        for process in gateways:
            process.terminate()
    assert len(statuses) == CLIENTS * REQUESTS
    assert (statuses.count(200), statuses.count(429)) == (100, len(statuses) - 100)
    assert admitted == 100


@pytest.mark.parametrize("on_store_error", ["allow", "deny"])
def test_a_stopped_redis_follows_on_store_error_and_limits_resume_when_it_is_back(
        throwaway_redis, upstreams, gateway, on_store_error):  # noqa: F811
    gw = gateway(shared_yaml(upstreams(1), throwaway_redis.url, on_store_error=on_store_error,
                             plans={"anonymous": ["3/minute"]}))

    def run(times: int) -> list[int]:
        return [httpx.get(gw.url + "/name", headers={"X-Client": "one"}, timeout=5).status_code
                for _ in range(times)]

    assert run(4) == [200, 200, 200, 429]
    throwaway_redis.kill()
    started = time.monotonic()
    expected = 200 if on_store_error == "allow" else 429
    assert run(5) == [expected] * 5
    assert time.monotonic() - started < 4.0  # bounded by the store timeout, never hanging
    assert metric(gw.admin_url, "surge_ratelimit_store_errors_total") == 5
    throwaway_redis.start()  # empty again (no persistence): a full quota
    assert run(4) == [200, 200, 200, 429]


def _new_ports(data: dict[str, Any]) -> None:
    """The same gateway on a listener and admin port of its own."""
    data["gateway"]["listen"] = f"127.0.0.1:{free_port()}"
    data["gateway"]["admin"] = f"127.0.0.1:{free_port()}"
