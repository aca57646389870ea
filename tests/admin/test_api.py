"""The control-plane routes over a real socket: what each answers and the problem shapes."""

from __future__ import annotations

import httpx
import pytest

from surge.observe.problem import PROBLEM_TYPE_BASE

pytestmark = pytest.mark.integration

PROBLEM_JSON = "application/problem+json"


async def test_healthz_answers_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"status": "ok"}


async def test_metrics_serves_the_control_planes_exposition_and_content_type(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert b"surge_requests_total 3" in response.content


async def test_services_lists_every_service_with_its_upstreams(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/services")
    assert response.status_code == 200
    (service,) = response.json()["services"]
    assert service["name"] == "api" and service["balance"] == "p2c"
    assert service["upstreams"][0]["address"] == "127.0.0.1:8101"


async def test_one_service_and_unknown_service(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/services/api")).json()["name"] == "api"
    missing = await client.get("/api/services/nope")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == PROBLEM_JSON


async def test_adding_an_upstream_answers_201_with_it_and_a_location(
    client: httpx.AsyncClient, control
) -> None:
    response = await client.post(
        "/api/services/api/upstreams", json={"address": "127.0.0.1:8103", "weight": 3}
    )
    assert response.status_code == 201
    assert response.json()["address"] == "127.0.0.1:8103"
    assert response.json()["weight"] == 3
    location = response.headers["location"]
    assert location == "/api/services/api/upstreams/127.0.0.1%3A8103"
    assert (await client.get(location)).json()["weight"] == 3
    assert len(control.services["api"]["upstreams"]) == 2


async def test_weight_defaults_to_one(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/services/api/upstreams", json={"address": "db.local:80"})
    assert response.status_code == 201
    assert response.json()["weight"] == 1


@pytest.mark.parametrize("body, where", [
    ({"address": "127.0.0.1"}, "address"),
    ({"address": "127.0.0.1:0"}, "address"),
    ({"address": "127.0.0.1:99999"}, "address"),
    ({"address": "::1:80"}, "address"),
    ({"address": "[nope]:80"}, "address"),
    ({"address": "a b:80"}, "address"),
    ({"address": "127.0.0.1:8103", "weight": 0}, "weight"),
    ({"address": "127.0.0.1:8103", "weight": 1001}, "weight"),
    ({"address": "127.0.0.1:8103", "weight": "2"}, "weight"),
    ({"address": "127.0.0.1:8103", "color": "red"}, "color"),
    ({}, "address"),
    ([1, 2], "body"),
])
async def test_an_invalid_upstream_body_is_a_400_problem_naming_the_field(
    client: httpx.AsyncClient, body: object, where: str
) -> None:
    response = await client.post("/api/services/api/upstreams", json=body)
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM_JSON
    problem = response.json()
    assert problem["type"] == PROBLEM_TYPE_BASE + "bad-request"
    assert problem["status"] == 400
    assert problem["detail"].startswith(where)


async def test_ipv6_upstream_addresses_are_accepted_in_brackets(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/api/services/api/upstreams", json={"address": "[::1]:8104"})
    assert response.status_code == 201
    assert response.headers["location"].endswith("/upstreams/%5B%3A%3A1%5D%3A8104")


async def test_a_malformed_json_body_is_a_400_problem(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/services/api/upstreams", content=b'{"address": ',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert "malformed JSON" in response.json()["detail"]


async def test_a_body_that_is_not_json_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/services/api/upstreams", data={"address": "x:1"})
    assert response.status_code == 400
    assert "application/json" in response.json()["detail"]


async def test_adding_to_an_unknown_service_is_404_and_a_duplicate_is_400(
    client: httpx.AsyncClient,
) -> None:
    unknown = await client.post("/api/services/web/upstreams", json={"address": "h:1"})
    assert unknown.status_code == 404
    # not the data path's `no-route`: a client can tell the admin API's 404 from the gateway's
    assert unknown.json()["type"] == PROBLEM_TYPE_BASE + "not-found"
    duplicate = await client.post("/api/services/api/upstreams", json={"address": "127.0.0.1:8101"})
    assert duplicate.status_code == 400
    assert "already" in duplicate.json()["detail"]


async def test_removing_an_upstream_starts_draining_and_answers_202(
    client: httpx.AsyncClient, control
) -> None:
    response = await client.delete("/api/services/api/upstreams/127.0.0.1%3A8101")
    assert response.status_code == 202
    assert response.json() == {"status": "draining"}
    assert control.services["api"]["upstreams"][0]["draining"] is True


async def test_removing_takes_the_address_unencoded_too(client: httpx.AsyncClient) -> None:
    response = await client.delete("/api/services/api/upstreams/127.0.0.1:8101")
    assert response.status_code == 202


async def test_removing_an_unknown_upstream_is_404(client: httpx.AsyncClient) -> None:
    response = await client.delete("/api/services/api/upstreams/127.0.0.1%3A9999")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_JSON


async def test_reload_answers_the_summary(client: httpx.AsyncClient, control) -> None:
    response = await client.post("/api/reload")
    assert response.status_code == 200
    assert response.json() == {"services": 1, "changed": []}
    assert control.reloads == 1


async def test_a_bad_config_on_reload_is_a_400_with_the_problem_list(
    client: httpx.AsyncClient, control
) -> None:
    control.reload_problems = [
        "routes[1].service: unknown service 'ap' (did you mean 'api'?)",
        "gateway.listen: not host:port",
    ]
    response = await client.post("/api/reload")
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM_JSON
    problem = response.json()
    assert problem["type"] == PROBLEM_TYPE_BASE + "invalid-config"
    assert problem["problems"] == control.reload_problems
    assert problem["detail"] == "2 problems in the configuration"


async def test_an_unknown_route_is_a_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["status"] == 404


async def test_a_wrong_method_is_a_405_problem_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.put("/api/services")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert response.json()["type"] == PROBLEM_TYPE_BASE + "method-not-allowed"
    upstream = await client.post("/api/services/api/upstreams/127.0.0.1:8101")
    assert upstream.headers["allow"] == "DELETE, GET, HEAD"


async def test_head_answers_the_get_headers_without_a_body(client: httpx.AsyncClient) -> None:
    get = await client.get("/api/services")
    head = await client.head("/api/services")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"]


async def test_curls_default_form_type_is_read_as_json_when_it_parses(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/api/services/api/upstreams", content=b'{"address": "127.0.0.1:8105"}',
        headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 201
