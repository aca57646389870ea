"""Proxying basics through a real gateway to two real upstreams: requests and bodies arrive,
forwarding headers are added, request ids and trace context travel, hop-by-hop headers stop at
the gateway, and routes pick services by longest prefix, then host, methods and headers."""

from __future__ import annotations

import httpx
import pytest

from gateway.stack import Wire, assert_problem, request, service, surge_yaml

pytestmark = pytest.mark.integration

ROUTES = [
    {"prefix": "/api/", "service": "a", "strip_prefix": True},
    {"prefix": "/api/v2/", "service": "b", "strip_prefix": True},
    {"prefix": "/keep/", "service": "a"},
    {"prefix": "/h/", "host": "b.example", "service": "b", "strip_prefix": True},
    {"prefix": "/h/", "service": "a", "strip_prefix": True},
    {"prefix": "/m/", "methods": ["POST"], "service": "b", "strip_prefix": True},
    {"prefix": "/m/", "service": "a", "strip_prefix": True},
    {"prefix": "/hd/", "headers": {"X-Canary": "1"}, "service": "b", "strip_prefix": True},
    {"prefix": "/hd/", "service": "a", "strip_prefix": True},
]


@pytest.fixture(scope="module")
def gw(stack):
    a, b = stack.upstreams(2, names=["a", "b"])
    return stack.gateway(surge_yaml({"a": service([a]), "b": service([b])}, ROUTES))


@pytest.fixture
def client(gw):
    with httpx.Client(base_url=gw.url, timeout=5.0) as client:
        yield client


def received_headers(client: httpx.Client, headers: dict[str, str] | None = None) -> dict:
    response = client.get("/api/headers", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_get_reaches_the_upstream_and_its_answer_comes_back(client):
    response = client.get("/api/name")
    assert response.status_code == 200
    assert response.text == "a"
    assert response.headers["x-upstream-name"] == "a"


def test_a_post_body_reaches_the_upstream(client):
    body = b"hello through the gateway" * 100
    response = client.post("/api/echo", content=body)
    assert response.status_code == 200
    assert response.content == body


def test_forwarding_headers_name_the_client_the_scheme_and_the_host(client):
    seen = received_headers(client, {"Host": "shop.example:8443"})
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == "shop.example:8443"
    assert seen["host"] == "shop.example:8443"


def test_an_incoming_forwarded_for_chain_is_extended_with_the_client(client):
    seen = received_headers(client, {"X-Forwarded-For": "203.0.113.7"})
    assert seen["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"


def test_a_request_id_is_generated_when_absent_and_returned_to_the_client(client):
    first = client.get("/api/headers")
    second = client.get("/api/headers")
    first_id = first.json()["x-request-id"]
    assert first_id and first.headers["x-request-id"] == first_id
    assert second.json()["x-request-id"] != first_id


def test_a_client_request_id_is_passed_to_the_upstream_and_back(client):
    response = client.get("/api/headers", headers={"X-Request-ID": "order-42.retry-1"})
    assert response.json()["x-request-id"] == "order-42.retry-1"
    assert response.headers["x-request-id"] == "order-42.retry-1"


def test_a_client_request_id_that_is_not_a_safe_token_is_replaced(client):
    response = client.get("/api/headers", headers={"X-Request-ID": "two words\tand a tab"})
    generated = response.json()["x-request-id"]
    assert generated != "two words\tand a tab" and " " not in generated
    assert response.headers["x-request-id"] == generated


def test_traceparent_is_passed_unchanged(client):
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert received_headers(client, {"traceparent": trace})["traceparent"] == trace


def test_hop_by_hop_headers_stop_at_the_gateway(gw):
    headers = {"Connection": "keep-alive, X-Hop-Secret", "X-Hop-Secret": "1",
               "Keep-Alive": "timeout=5", "TE": "trailers", "Proxy-Connection": "keep-alive",
               "X-End-To-End": "kept"}
    with Wire(gw.listen) as wire:
        wire.send(request("GET", "/api/headers", headers))
        seen = wire.answer().json()
    assert seen["x-end-to-end"] == "kept"
    for name in ("connection", "x-hop-secret", "keep-alive", "te", "proxy-connection"):
        assert name not in seen, f"{name} was forwarded: {seen}"


def test_strip_prefix_sends_the_path_without_the_route_prefix(client):
    assert client.get("/api/name").text == "a"   # the upstream saw /name


def test_without_strip_prefix_the_upstream_sees_the_whole_path(client):
    response = client.get("/keep/name")          # the upstream saw /keep/name: not its route
    assert response.status_code == 404
    assert response.headers["x-upstream-name"] == "a"


def test_the_longest_matching_prefix_wins(client):
    assert client.get("/api/v2/name").text == "b"
    assert client.get("/api/v3/name").status_code == 404  # /api/ matched: /v3/name upstream


def test_a_route_with_a_host_takes_requests_for_that_host_only(client):
    assert client.get("/h/name", headers={"Host": "b.example"}).text == "b"
    assert client.get("/h/name", headers={"Host": "b.example:8000"}).text == "b"
    assert client.get("/h/name", headers={"Host": "other.example"}).text == "a"


def test_a_route_with_methods_takes_those_methods_only(client):
    assert client.post("/m/echo", content=b"x").headers["x-upstream-name"] == "b"
    assert client.get("/m/name").text == "a"


def test_a_route_with_headers_takes_requests_carrying_them_only(client):
    assert client.get("/hd/name", headers={"X-Canary": "1"}).text == "b"
    assert client.get("/hd/name", headers={"X-Canary": "0"}).text == "a"
    assert client.get("/hd/name").text == "a"


def test_a_path_no_route_matches_gets_404_problem_json(client):
    response = client.get("/nowhere/at/all")
    document = assert_problem(response.status_code, response.headers.get("content-type"),
                              response.content, 404)
    assert "/nowhere/at/all" in document.get("detail", "")
    assert client.get("/api/name").text == "a"  # and the connection still serves
