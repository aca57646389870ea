"""Balancing end to end over three real upstreams: a sticky cookie pins a client to one upstream
and moves it when that upstream drains; `hash` on a header sends each user to one upstream;
`round_robin` spreads sequential requests evenly."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest

from gateway.stack import eventually, names_seen, service, surge_yaml, upstream_views

pytestmark = pytest.mark.integration

COOKIE = "surge_upstream"


@pytest.fixture(scope="module")
def fleet(stack):
    return stack.upstreams(3)


@pytest.fixture(scope="module")
def gw(stack, fleet):
    services = {
        "sticky": service(fleet, sticky_cookie=COOKIE),
        "sticky_drain": service(fleet, sticky_cookie=COOKIE),
        "hash": service(fleet, balance="hash", hash_on="header:X-User"),
        "rr": service(fleet, balance="round_robin"),
    }
    routes = [{"prefix": f"/{name}/", "service": name, "strip_prefix": True} for name in services]
    return stack.gateway(surge_yaml(services, routes))


def test_a_sticky_cookie_is_set_and_then_pins_the_client_to_one_upstream(gw):
    with httpx.Client(base_url=gw.url, timeout=5) as client:
        first = client.get("/sticky/name")
        assert COOKIE in first.headers.get("set-cookie", "")
        assert client.cookies.get(COOKIE)
        assert set(names_seen(f"{gw.url}/sticky/name", 30, client)) == {first.text}
        assert "set-cookie" not in client.get("/sticky/name").headers   # honoured, not reset


def test_a_sticky_client_moves_when_its_upstream_drains_and_stays_on_the_new_one(gw, fleet):
    with httpx.Client(base_url=gw.url, timeout=5) as client:
        pinned = client.get("/sticky_drain/name").text
        address = next(u.address for u in fleet if u.name == pinned)
        deleted = httpx.delete(f"{gw.admin_url}/api/services/sticky_drain/upstreams/{address}")
        assert deleted.status_code == 202
        eventually(lambda: address not in upstream_views(gw.admin_url, "sticky_drain"),
                   what="the pinned upstream drained and removed")
        moved = client.get("/sticky_drain/name")
        assert moved.text != pinned
        assert COOKIE in moved.headers.get("set-cookie", "")   # re-pinned
        assert set(names_seen(f"{gw.url}/sticky_drain/name", 20, client)) == {moved.text}


def test_hash_on_a_header_sends_each_user_to_the_same_upstream(gw):
    with httpx.Client(base_url=gw.url, timeout=5) as client:
        chosen = {}
        for user in (f"user-{i}" for i in range(30)):
            names = {client.get("/hash/name", headers={"X-User": user}).text for _ in range(5)}
            assert len(names) == 1, (user, names)
            chosen[user] = names.pop()
    assert len(set(chosen.values())) >= 2, "30 users all hashed to one upstream"


def test_round_robin_spreads_sequential_requests_evenly_over_three(gw):
    counts = Counter(names_seen(f"{gw.url}/rr/name", 300))
    assert counts == {"u0": 100, "u1": 100, "u2": 100}
