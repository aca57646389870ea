"""The policy chain, driven through a real `GatewayServer`, `ClientConnection` and pooled
`UpstreamConnection` over in-memory transports (no sockets): fake policies are put on a
stage, and what the client and each upstream get is read back byte for byte.

What a policy can do: let the request on or answer it (an error, or a whole reply that is
not one), see the response head and body on the way back (after-hooks in reverse, only for
the policies that let the request on), change the request head before it is built, pick
another service, and tell later policies who the caller is (rate limiting reads the plan)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import pytest

from support.memory_transport import MemoryTransport
from surge.config import parse
from surge.gateway.client import ClientConnection
from surge.gateway.exchange import Exchange
from surge.gateway.policy import (
    STAGES,
    Answer,
    BodyWatcher,
    Identity,
    Reply,
    RoutePolicy,
    Verdict,
    chain,
)
from surge.gateway.server import GatewayServer
from surge.observe.problem import Problem
from surge.upstreams.connection import UpstreamConnection

CONFIG = """
gateway: {listen: "127.0.0.1:18999", access_log: "off"}
services:
  stable: {upstreams: ["127.0.0.1:18998"]}
  canary: {upstreams: ["127.0.0.1:18997"]}
routes:
  - {name: api, prefix: /api/, service: stable, strip_prefix: true, rate_limit: true}
  - {prefix: /, service: stable}
rate_limits:
  key: header:X-Client
  plans: {wide: [100/minute], tight: [1/minute]}
  default_plan: wide
"""
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n"
            b"hello")


class Rig:
    """A gateway with one idle pooled connection to each upstream, and a client."""

    def __init__(self, gateway: GatewayServer) -> None:
        self.gateway = gateway
        self.upstream: dict[str, tuple[UpstreamConnection, MemoryTransport]] = {}
        for name, service in gateway.snapshot.services.items():
            up = next(iter(service.upstreams.values()))
            conn = UpstreamConnection(up.pool)
            wire = MemoryTransport(("127.0.0.1", 0))
            conn.connection_made(wire)
            up.pool.conns.add(conn)
            up.pool.idle.append(conn)
            self.upstream[name] = conn, wire
        self.client = ClientConnection(gateway)
        self.wire = MemoryTransport(("10.0.0.1", 40000))
        self.client.connection_made(self.wire)

    def put(self, stage: str, policy: RoutePolicy, prefix: str = "/api/") -> None:
        """Put `policy` on `stage` of the route with `prefix`."""
        def source(spec: Any, earlier: tuple[RoutePolicy, ...]) -> RoutePolicy | None:
            return policy if spec.prefix == prefix else None
        self.gateway.policy_sources[stage] = source
        self.gateway.rebuild()

    def request(self, target: str = "/api/x", headers: str = "") -> None:
        self.client.data_received(
            f"GET {target} HTTP/1.1\r\nHost: gw\r\n{headers}\r\n".encode())

    def respond(self, service: str = "stable", response: bytes = RESPONSE) -> bytes:
        """The upstream answers; returns the request head it had been sent."""
        conn, wire = self.upstream[service]
        sent = wire.take()
        conn.data_received(response)
        return sent

    def answer(self) -> bytes:
        return self.wire.take()


@pytest.fixture
async def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Rig]:
    monkeypatch.chdir(tmp_path)  # the key store's data_dir
    gateway = GatewayServer(parse(CONFIG))
    yield Rig(gateway)
    if gateway.rate_limiting is not None:
        await gateway.rate_limiting.close()


class Recorder(RoutePolicy):
    """Notes its hooks in a shared log and adds a response header on the way back."""

    def __init__(self, name: str, log: list[str], verdict: Verdict = None) -> None:
        self.name = name
        self.log = log
        self.verdict = verdict

    def before(self, exchange: Exchange) -> Verdict | Awaitable[Verdict]:
        self.log.append(f"before {self.name}")
        return self.verdict

    def after(self, exchange: Exchange, status: int, block: bytes) -> None:
        here = " here" if exchange.answered_here else ""
        self.log.append(f"after {self.name} {status}{here}")
        exchange.extra_headers += b"X-Seen-By: %s\r\n" % self.name.encode()


def test_the_stages_are_built_in_their_fixed_order_whatever_the_order_given():
    def named(stage: str):
        return lambda spec, earlier: Recorder(stage + f"<{len(earlier)}", [])
    sources = {stage: named(stage) for stage in reversed(STAGES)}
    assert [p.name for p in chain(None, sources)] == [  # type: ignore[attr-defined]
        "cors<0", "auth<1", "rate_limit<2", "deprecation<3", "cache<4"]
    with pytest.raises(ValueError, match="no policy stage named tracing"):
        chain(None, {"tracing": named("tracing")})


async def test_after_hooks_run_in_reverse_and_see_the_upstreams_head(rig: Rig):
    log: list[str] = []
    rig.put("cors", Recorder("cors", log))
    rig.put("cache", Recorder("cache", log))
    rig.request()
    rig.respond()
    answer = rig.answer()
    # rate_limit is the real one between them, with no after-hook of its own
    assert log == ["before cors", "before cache", "after cache 200", "after cors 200"]
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"X-Seen-By: cache\r\nX-Seen-By: cors\r\n" in answer
    assert answer.endswith(b"\r\n\r\nhello")


async def test_a_reply_answers_at_the_gateway_and_only_the_policies_before_see_it(rig: Rig):
    log: list[str] = []
    cached = Reply(200, [(b"Content-Type", b"text/plain"), (b"Age", b"3")], b"from cache")
    rig.put("cors", Recorder("cors", log))
    rig.put("cache", Recorder("cache", log, cached))
    rig.request()
    answer = rig.answer()
    assert log == ["before cors", "before cache", "after cors 200 here"]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\nX-Request-ID: ")
    assert b"\r\nContent-Type: text/plain\r\nAge: 3\r\nContent-Length: 10\r\n" in head
    assert b"RateLimit: " in head and b"X-Seen-By: cors" in head
    assert body == b"from cache"
    assert rig.upstream["stable"][1].take() == b""  # nothing went upstream
    rig.request()  # the connection is still good for the next request
    assert rig.answer().endswith(b"\r\n\r\nfrom cache")


async def test_a_preflight_reply_of_204_has_neither_body_nor_length(rig: Rig):
    rig.put("cors", Recorder("cors", [], Reply(204, [(b"Access-Control-Max-Age", b"600")],
                                               b"ignored")))
    rig.request()
    answer = rig.answer()
    assert answer.startswith(b"HTTP/1.1 204 No Content\r\n")
    assert b"Access-Control-Max-Age: 600\r\n" in answer
    assert b"Content-Length" not in answer and answer.endswith(b"\r\n\r\n")


async def test_an_error_answer_passes_the_after_hooks_of_the_policies_before_it(rig: Rig):
    log: list[str] = []
    refused = Answer(Problem(403, "forbidden", "Forbidden", "forbidden"), "no entry")
    rig.put("cors", Recorder("cors", log))
    rig.put("auth", Recorder("auth", log, refused))
    rig.request()
    answer = rig.answer()
    assert log == ["before cors", "before auth", "after cors 403 here"]
    assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"X-Seen-By: cors\r\n" in answer and b"application/problem+json" in answer


class Claims(RoutePolicy):
    """An auth policy: the caller is who `X-Token` says, on the plan it names."""

    def claims(self) -> frozenset[bytes]:
        return frozenset({b"authorization"})

    def before(self, exchange: Exchange) -> Verdict | Awaitable[Verdict]:
        for name, value in exchange.headers:
            if name.lower() == b"x-token":
                user, _, plan = value.decode().partition(":")
                exchange.identity = Identity("user:" + user, user, plan or None)
                exchange.set_request_header(b"X-User-Id", user.encode())
        return None


async def test_a_policy_changes_the_request_head_before_it_is_built(rig: Rig):
    class Rewrite(RoutePolicy):
        def before(self, exchange: Exchange) -> Verdict | Awaitable[Verdict]:
            exchange.upstream_target = b"/v2" + exchange.upstream_target
            exchange.set_request_header(b"traceparent", b"00-abc-def-01")
            return None
    rig.put("auth", Claims())
    rig.put("cache", Rewrite())
    rig.request(headers="X-Token: ann\r\nX-User-Id: spoofed\r\nTraceparent: old\r\n")
    sent = rig.respond()
    assert sent.startswith(b"GET /v2/x HTTP/1.1\r\n")  # stripped of /api/, then rewritten
    assert b"X-User-Id: ann\r\n" in sent and b"spoofed" not in sent
    assert b"traceparent: 00-abc-def-01\r\n" in sent and b"old" not in sent


async def test_a_policy_sends_the_request_to_another_service(rig: Rig):
    class Canary(RoutePolicy):
        def before(self, exchange: Exchange) -> Verdict | Awaitable[Verdict]:
            assert not exchange.use_service("nonexistent")
            assert exchange.use_service("canary")
            return None
    rig.put("cache", Canary())
    rig.request()
    assert rig.upstream["stable"][1].take() == b""
    assert rig.respond("canary").startswith(b"GET /x HTTP/1.1\r\n")
    assert rig.answer().endswith(b"hello")


async def test_rate_limiting_counts_the_identity_another_policy_found_on_its_plan(rig: Rig):
    rig.put("auth", Claims())
    rig.request(headers="X-Token: bob:tight\r\n")
    rig.respond()
    assert rig.answer().startswith(b"HTTP/1.1 200")
    rig.request(headers="X-Token: bob:tight\r\n")  # tight is 1/minute
    answer = rig.answer()
    assert answer.startswith(b"HTTP/1.1 429") and b"plan 'tight'" in answer
    rig.request(headers="X-Token: eve:tight\r\n")  # another caller on the same plan
    rig.respond()
    assert rig.answer().startswith(b"HTTP/1.1 200")
    rig.request(headers="X-Token: bob\r\n")  # no plan of its own: the route's (wide)
    rig.respond()
    assert rig.answer().startswith(b"HTTP/1.1 200")


async def test_a_bearer_token_is_an_api_key_only_when_no_auth_policy_claims_it(rig: Rig):
    rig.request(headers="Authorization: Bearer eyJhbGciOi.jwt.sig\r\n")
    assert rig.answer().startswith(b"HTTP/1.1 401")  # no auth policy: taken for an API key
    rig.put("auth", Claims())
    rig.request(headers="Authorization: Bearer eyJhbGciOi.jwt.sig\r\n")
    rig.respond()
    assert rig.answer().startswith(b"HTTP/1.1 200")


class Collect(BodyWatcher):
    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.ended = 0

    def body(self, data: bytes) -> None:
        self.pieces.append(data)

    def end(self) -> None:
        self.ended += 1


async def test_a_body_watcher_sees_the_upstreams_body_and_its_end(rig: Rig):
    watcher = Collect()

    class Fill(RoutePolicy):
        def after(self, exchange: Exchange, status: int, block: bytes) -> None:
            assert b"\r\nContent-Type: text/plain" in block
            exchange.watch(watcher)
    rig.put("cache", Fill())
    rig.request()
    conn, wire = rig.upstream["stable"]
    wire.take()
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    assert (watcher.pieces, watcher.ended) == ([b"abc"], 0)  # not complete yet
    conn.data_received(b"2\r\nde\r\n0\r\n\r\n")
    assert (b"".join(watcher.pieces), watcher.ended) == (b"abcde", 1)
    assert rig.answer().endswith(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")  # re-chunked as it came


async def test_a_route_without_policies_runs_no_hook(rig: Rig):
    log: list[str] = []
    rig.put("cors", Recorder("cors", log))  # on /api/ only
    rig.request("/other")
    rig.respond()
    assert log == [] and b"X-Seen-By" not in rig.answer()


async def test_an_api_key_rate_limiting_finds_becomes_the_identity_later_policies_read(rig: Rig):
    limiting = rig.gateway.rate_limiting
    assert limiting is not None
    raw, info = limiting.registry.create("acme", "tight")
    seen: list[Identity | None] = []

    class Look(RoutePolicy):
        def before(self, exchange: Exchange) -> Verdict | Awaitable[Verdict]:
            seen.append(exchange.identity)
            return None
    rig.put("cache", Look())
    rig.request(headers=f"X-API-Key: {raw}\r\n")
    rig.respond()
    rig.request(headers="X-Client: anyone\r\n")
    rig.respond()
    assert [(i.key, i.subject, i.plan) if i else None for i in seen] == [
        (f"key:{info.id}", "acme", "tight"), None]


async def test_a_reply_to_head_keeps_its_length_but_sends_no_body(rig: Rig):
    rig.put("cache", Recorder("cache", [], Reply(200, [(b"Content-Type", b"text/plain")],
                                                 b"twelve bytes")))
    rig.client.data_received(b"HEAD /api/x HTTP/1.1\r\nHost: gw\r\n\r\n")
    answer = rig.answer()
    assert b"\r\nContent-Length: 12\r\n" in answer and answer.endswith(b"\r\n\r\n")
    rig.client.data_received(b"GET /api/x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    answer = rig.answer()
    assert b"\r\nConnection: keep-alive\r\n" in answer and answer.endswith(b"twelve bytes")


async def test_a_reply_is_dated_unless_it_carries_a_date_of_its_own(rig: Rig):
    stored = b"Tue, 01 Dec 2026 10:00:00 GMT"
    rig.put("cache", Recorder("cache", [], Reply(200, [(b"Date", stored)], b"old")))
    rig.request()
    answer = rig.answer()
    assert answer.count(b"\r\nDate: ") == 1 and b"\r\nDate: %s\r\n" % stored in answer
    rig.put("cache", Recorder("cache", [], Reply(204)))
    rig.request()
    assert rig.answer().count(b"\r\nDate: ") == 1


class Broken(RoutePolicy):
    """A policy with a bug: the hook named in `where` raises."""

    def __init__(self, where: str) -> None:
        self.where = where

    def before(self, exchange: Exchange) -> Verdict | Awaitable[Verdict]:
        if self.where == "before":
            raise RuntimeError("bug in before")
        return None

    def after(self, exchange: Exchange, status: int, block: bytes) -> None:
        if self.where == "after":
            raise RuntimeError("bug in after")
        if self.where in ("body", "end"):
            exchange.watch(BrokenWatcher(self.where))


class BrokenWatcher(BodyWatcher):
    def __init__(self, where: str) -> None:
        self.where = where

    def body(self, data: bytes) -> None:
        if self.where == "body":
            raise RuntimeError("bug in body")

    def end(self) -> None:
        raise RuntimeError("bug in end")


async def test_a_policy_that_raises_in_before_answers_500_and_the_gateway_serves_on(rig: Rig):
    rig.put("cache", Broken("before"))
    rig.request()
    answer = rig.answer()
    assert answer.startswith(b"HTTP/1.1 500 ") and b"a gateway policy failed" in answer
    assert rig.upstream["stable"][1].take() == b""  # the upstream was never asked
    rig.request("/other")  # same connection, a route without the policy
    rig.respond()
    assert rig.answer().endswith(b"hello")


@pytest.mark.parametrize("where", ["after", "body", "end"])
async def test_a_policy_that_raises_on_the_way_back_loses_nothing_of_the_response(
        rig: Rig, where: str):
    rig.put("cache", Broken(where))
    rig.request()
    rig.respond()
    answer = rig.answer()
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"hello")
    rig.request()  # the connection is still usable
    rig.respond()
    assert rig.answer().endswith(b"hello")
