"""WebSocket through the gateway: the `Upgrade` handshake is passed on, the 101 comes back, and
from then on frames flow both ways through the tunnel (the `websockets` client library)."""

from __future__ import annotations

import httpx
import pytest
from websockets.sync.client import connect

from gateway.stack import service, surge_yaml, upstream_views

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gw(stack):
    (a,) = stack.upstreams(1, names=["a"])
    return stack.gateway(surge_yaml({"app": service([a])}, [{"prefix": "/", "service": "app"}]))


def test_text_and_binary_messages_are_echoed_through_the_gateway(gw):
    with connect(f"ws://{gw.listen}/ws", open_timeout=5, close_timeout=2) as ws:
        assert ws.response.status_code == 101
        assert ws.response.headers.get("x-request-id")   # the handshake went through surge
        for i in range(20):
            ws.send(f"message {i}")
            assert ws.recv(timeout=5) == f"message {i}"
        payload = bytes(range(256)) * 1024   # 256 KiB: several frames' worth of TCP segments
        ws.send(payload)
        assert ws.recv(timeout=5) == payload


def test_a_closed_websocket_leaves_the_gateway_serving_and_nothing_in_flight(gw):
    with connect(f"ws://{gw.listen}/ws", open_timeout=5, close_timeout=2) as ws:
        ws.send("bye")
        assert ws.recv(timeout=5) == "bye"
    assert httpx.get(f"{gw.url}/name", timeout=5).text == "a"
    (view,) = upstream_views(gw.admin_url, "app").values()
    assert view["inflight"] == 0
