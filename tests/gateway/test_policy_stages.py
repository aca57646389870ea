"""Every stage of the policy chain through a real gateway (listening on a real socket, in this
process, so the test can put its own policies on the stages not built yet) in front of a
real upstream process: a CORS preflight answered at the gateway, an auth policy that finds
the caller in a Bearer token and forwards who it is, rate limiting on that caller's plan, and a
cache that fills from the upstream's body and answers from memory, in that order. Also how
rate limiting behaves under `workers: 2`: one count across both processes on a shared store,
and an API key made through the master in force in both."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.stack import eventually, service, surge_yaml, with_changes
from surge.config import parse
from surge.gateway.exchange import Exchange
from surge.gateway.policy import (
    Answer,
    BodyWatcher,
    Identity,
    Reply,
    RoutePolicy,
    Verdict,
)
from surge.gateway.server import GatewayServer
from surge.observe.problem import UNAUTHORIZED

pytestmark = pytest.mark.integration


class Preflight(RoutePolicy):
    """A CORS stage: answers preflights, and puts the allowed origin on every answer."""

    def before(self, exchange: Exchange) -> Verdict | Awaitable[Verdict]:
        if exchange.method == b"OPTIONS":
            return Reply(204, [(b"Access-Control-Allow-Origin", b"*"),
                               (b"Access-Control-Allow-Methods", b"GET")])
        return None

    def after(self, exchange: Exchange, status: int, block: bytes) -> None:
        exchange.extra_headers += b"Access-Control-Allow-Origin: *\r\n"


class BearerAuth(RoutePolicy):
    """An auth stage: `Authorization: Bearer SUBJECT.PLAN` stands in for a JWT."""

    def claims(self) -> frozenset[bytes]:
        return frozenset({b"authorization"})

    def before(self, exchange: Exchange) -> Verdict | Awaitable[Verdict]:
        token = dict((n.lower(), v) for n, v in exchange.headers).get(b"authorization", b"")
        if not token.startswith(b"Bearer "):
            return Answer(UNAUTHORIZED, "a bearer token is required")
        subject, _, plan = token[7:].decode().partition(".")
        exchange.identity = Identity("user:" + subject, subject, plan)
        exchange.set_request_header(b"X-User-Id", subject.encode())
        return None


class Fill(BodyWatcher):
    def __init__(self, store: dict[str, tuple[bytes, bytes]], key: str, block: bytes) -> None:
        self.store, self.key, self.block, self.pieces = store, key, block, [b""]

    def body(self, data: bytes) -> None:
        self.pieces.append(data)

    def end(self) -> None:
        self.store[self.key] = self.block, b"".join(self.pieces)


class MemoryCache(RoutePolicy):
    """A cache stage: per caller and target; a hit is a Reply, a miss fills on the way back."""

    def __init__(self) -> None:
        self.store: dict[str, tuple[bytes, bytes]] = {}

    def key(self, exchange: Exchange) -> str:
        who = exchange.identity.key if exchange.identity is not None else "-"
        return f"{who} {exchange.target.decode()}"

    def before(self, exchange: Exchange) -> Verdict | Awaitable[Verdict]:
        hit = self.store.get(self.key(exchange))
        if hit is None:
            return None
        block, body = hit
        lines = [line.partition(b": ") for line in block.split(b"\r\n") if line]
        return Reply(200, [(name, value) for name, _, value in lines] + [(b"X-Cache", b"hit")],
                     body)

    def after(self, exchange: Exchange, status: int, block: bytes) -> None:
        if status == 200 and not exchange.answered_here:
            exchange.watch(Fill(self.store, self.key(exchange), block))


@pytest.fixture
async def gw(upstreams, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    monkeypatch.chdir(tmp_path)  # the key store's data_dir
    (app,) = upstreams(1)
    text = with_changes(surge_yaml({"app": service([app])}, [
        {"name": "api", "prefix": "/api/", "service": "app", "strip_prefix": True,
         "rate_limit": True},
        {"prefix": "/", "service": "app"},
    ]), lambda data: data.update(rate_limits={
        "plans": {"open": ["100/minute"], "tight": ["2/minute"]}, "default_plan": "open"}))
    gateway = GatewayServer(parse(text))
    policies: dict[str, Any] = {"cors": Preflight(), "auth": BearerAuth(),
                                "cache": MemoryCache()}
    for stage, policy in policies.items():  # on the route named api only
        gateway.policy_sources[stage] = (
            lambda spec, earlier, p=policy: p if spec.name == "api" else None)
    gateway.rebuild()
    await gateway.start()
    yield f"http://{gateway.config.gateway.listen[0]}"
    await gateway.shutdown(0)


async def test_each_stage_does_its_part_in_the_fixed_order(gw: str):
    async with httpx.AsyncClient(base_url=gw, timeout=5) as http:
        preflight = await http.options("/api/headers", headers={"Origin": "https://a.test"})
        assert preflight.status_code == 204 and preflight.content == b""
        assert preflight.headers["access-control-allow-methods"] == "GET"

        refused = await http.get("/api/headers")
        assert refused.status_code == 401  # CORS's after-hook saw auth's answer
        assert refused.headers["access-control-allow-origin"] == "*"

        ann = {"Authorization": "Bearer ann.tight", "X-User-Id": "spoofed"}
        first = await http.get("/api/headers", headers=ann)
        assert first.status_code == 200 and "x-cache" not in first.headers
        assert first.json()["x-user-id"] == "ann"  # forwarded, the client's copy replaced
        assert first.headers["access-control-allow-origin"] == "*"
        assert first.headers["ratelimit-policy"] == "\"tight\";q=2;w=60"  # ann's plan

        again = await http.get("/api/headers", headers=ann)
        assert again.headers["x-cache"] == "hit"  # from memory, counted first
        assert again.json() == first.json()
        assert again.headers["ratelimit"] != first.headers["ratelimit"]

        limited = await http.get("/api/headers", headers=ann)
        assert limited.status_code == 429  # the third in a minute on tight
        assert limited.headers["access-control-allow-origin"] == "*"

        bob = await http.get("/api/headers", headers={"Authorization": "Bearer bob.tight"})
        assert bob.status_code == 200 and bob.json()["x-user-id"] == "bob"

        plain = await http.get("/headers", headers={"Authorization": "Bearer ann.tight"})
        assert plain.status_code == 200  # another route: no stage runs
        assert "access-control-allow-origin" not in plain.headers


def test_rate_limits_under_two_workers_share_the_store_and_the_masters_keys(
        upstreams, gateway, redis_url):
    (app,) = upstreams(1)

    def add(data: dict[str, Any]) -> None:
        data["state"] = redis_url
        data["rate_limits"] = {"key": "header:X-Client",
                               "plans": {"open": ["4/minute"], "paid": ["8/minute"]},
                               "default_plan": "open"}
    gw = gateway(with_changes(surge_yaml(
        {"app": service([app])}, [{"prefix": "/", "service": "app", "rate_limit": True}],
        workers=2), add))
    made = httpx.post(f"{gw.admin_url}/api/keys", json={"name": "acme", "plan": "paid"},
                      timeout=5)
    assert made.status_code == 201
    key = made.json()["key"]

    def count(headers: dict[str, str], times: int) -> tuple[list[int], set[str]]:
        """Statuses, and the processes that answered: a new connection for each request,
        so the kernel spreads them over both workers."""
        statuses, processes = [], set()
        for _ in range(times):
            response = httpx.get(f"{gw.url}/name", timeout=5,
                                 headers={**headers, "Connection": "close"})
            processes.add(response.headers["x-request-id"].rsplit("-", 1)[0])
            statuses.append(response.status_code)
        return statuses, processes

    statuses, processes = count({"X-Client": "c1"}, 12)
    assert len(processes) == 2, "one worker answered all: the test proves nothing"
    assert statuses == [200] * 4 + [429] * 8  # one count for both workers, not one each
    # The key, made through the master, reaches each worker within its registry's poll
    # (0.5 s): once one worker lets it in, the other has had as long.
    eventually(lambda: count({"X-API-Key": key}, 1)[0] == [200], what="the key in force")
    time.sleep(0.6)
    statuses, processes = count({"X-API-Key": key}, 11)
    assert len(processes) == 2
    assert statuses == [200] * 7 + [429] * 4  # 8 a minute on its plan, one spent above
