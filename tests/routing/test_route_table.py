"""Route matching as tables of (routes, request -> route), ties included, and the prefix strip."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from surge.routing import CompiledRoute, RouteTable, normalize_host, strip


@dataclass
class RouteConfig:
    prefix: str
    service: str
    host: str | None = None
    methods: list[str] | None = None
    headers: dict[str, str] | None = None
    strip_prefix: bool = False
    rate_limit: object = True
    tags: list[str] = field(default_factory=list)


TABLE = RouteTable([
    RouteConfig("/", "root"),
    RouteConfig("/api", "api-bare"),
    RouteConfig("/api/", "api"),
    RouteConfig("/api/v2/", "api-v2"),
    RouteConfig("/api/", "api-canary", headers={"X-Canary": "1"}),
    RouteConfig("/api/", "api-writes", methods=["post", "PUT"]),
    RouteConfig("/api/", "api-admin-host", host="Admin.Example.com"),
    RouteConfig("/api/", "api-admin-writes", host="admin.example.com", methods=["POST"]),
    RouteConfig("/static/", "static", strip_prefix=True),
    RouteConfig("/only-get/", "only-get", methods=["GET"]),
])


@pytest.mark.parametrize(
    ("method", "path", "host", "headers", "service"),
    [
        pytest.param("GET", "/", None, {}, "root", id="the root prefix catches everything"),
        pytest.param("GET", "/nothing/here", None, {}, "root", id="unknown paths fall to root"),
        pytest.param("GET", "/api/users", None, {}, "api", id="segment prefix"),
        pytest.param("GET", "/api", None, {}, "api-bare", id="/api/ does not match /api"),
        pytest.param("GET", "/apix", None, {}, "api-bare", id="plain prefix matches /apix"),
        pytest.param("GET", "/api/v2/users", None, {}, "api-v2", id="longest prefix wins"),
        pytest.param("GET", "/api/v2", None, {}, "api", id="/api/v2/ needs its slash"),
        pytest.param("GET", "/api/x", None, {"x-canary": "1"}, "api-canary",
                     id="headers beat no headers"),
        pytest.param("GET", "/api/x", None, {"x-canary": "2"}, "api",
                     id="header value must be equal"),
        pytest.param("POST", "/api/x", None, {"x-canary": "1"}, "api-writes",
                     id="methods beat headers"),
        pytest.param("PUT", "/api/x", "api.example.com", {}, "api-writes",
                     id="configured methods are upper-cased"),
        pytest.param("GET", "/api/x", "ADMIN.example.com:8443", {"x-canary": "1"},
                     "api-admin-host", id="host beats methods and headers, case and port ignored"),
        pytest.param("POST", "/api/x", "admin.example.com", {}, "api-admin-writes",
                     id="host with methods beats host alone"),
        pytest.param("POST", "/api/v2/x", "admin.example.com", {}, "api-v2",
                     id="a longer prefix beats a more specific shorter one"),
        pytest.param("POST", "/only-get/x", None, {}, "root",
                     id="a route that does not fit falls through to shorter prefixes"),
        pytest.param("GET", "/static/app.js?v=1/2", None, {}, "static",
                     id="a query string does not disturb the match"),
    ],
)
def test_route_table_picks_by_prefix_then_host_methods_headers(
    method: str, path: str, host: str | None, headers: dict[str, str], service: str
) -> None:
    route = TABLE.match(method, path, host, headers)
    assert route is not None and route.service == service


def test_no_matching_route_gives_none() -> None:
    table = RouteTable([RouteConfig("/api/", "api", methods=["GET"])])
    assert table.match("GET", "/other", None, {}) is None
    assert table.match("DELETE", "/api/x", None, {}) is None
    assert RouteTable([]).match("GET", "/", None, {}) is None


def test_http_methods_are_compared_case_sensitively() -> None:
    table = RouteTable([RouteConfig("/", "x", methods=["GET"])])
    assert table.match("get", "/", None, {}) is None


def test_equal_routes_go_to_the_first_in_the_config() -> None:
    table = RouteTable([RouteConfig("/a/", "first"), RouteConfig("/a/", "second")])
    assert table.match("GET", "/a/b").service == "first"  # type: ignore[union-attr]


def test_every_header_of_a_route_must_match() -> None:
    table = RouteTable([
        RouteConfig("/", "both", headers={"X-A": "1", "X-B": "2"}),
        RouteConfig("/", "plain"),
    ])
    assert table.match("GET", "/", None, {"x-a": "1"}).service == "plain"  # type: ignore[union-attr]
    assert table.match(  # type: ignore[union-attr]
        "GET", "/", None, {"x-a": "1", "x-b": "2"}
    ).service == "both"


def test_a_route_keeps_its_source_and_room_for_gateway_data() -> None:
    config = RouteConfig("/api/", "api", rate_limit={"plan": "free"}, tags=["beta"])
    route = RouteTable([config]).match("GET", "/api/x")
    assert route is not None and route.source is config
    assert route.rate_limit == {"plan": "free"} and route.tags == ["beta"]
    route.extra["chain"] = "compiled policies"
    assert route.extra == {"chain": "compiled policies"}
    with pytest.raises(AttributeError):
        route.no_such_attribute  # noqa: B018


def test_a_prefix_without_a_leading_slash_is_refused() -> None:
    with pytest.raises(ValueError, match="must start with '/'"):
        RouteTable([RouteConfig("api/", "api")])


@pytest.mark.parametrize(
    ("prefix", "path", "stripped"),
    [
        ("/api/", "/api/users", "/users"),
        ("/api/", "/api/", "/"),
        ("/api", "/api", "/"),
        ("/api", "/api/users?x=1", "/users?x=1"),
        ("/api", "/api?x=1", "/?x=1"),
        ("/", "/users", "/users"),
    ],
)
def test_strip_removes_the_prefix_and_keeps_a_leading_slash(
    prefix: str, path: str, stripped: str
) -> None:
    assert strip(path, CompiledRoute(RouteConfig(prefix, "s", strip_prefix=True))) == stripped


def test_strip_leaves_the_path_alone_without_strip_prefix() -> None:
    assert strip("/api/users", CompiledRoute(RouteConfig("/api/", "s"))) == "/api/users"


@pytest.mark.parametrize(
    ("raw", "host"),
    [("Example.COM", "example.com"), ("example.com:8080", "example.com"),
     ("example.com.", "example.com"), ("[::1]:8080", "[::1]"), ("[::1]", "[::1]")],
)
def test_hosts_are_normalised_without_port_or_case(raw: str, host: str) -> None:
    assert normalize_host(raw) == host


segments = st.sampled_from(["", "a", "ab", "api", "v1", "x"])
prefixes = st.lists(segments, min_size=0, max_size=3).flatmap(
    lambda parts: st.sampled_from(["/" + "/".join(parts), "/" + "/".join(parts) + "/"])
)


@given(prefixes=st.lists(prefixes, min_size=1, max_size=8), path=prefixes)
def test_the_index_agrees_with_a_longest_prefix_scan(prefixes: list[str], path: str) -> None:
    table = RouteTable([RouteConfig(p, f"s{i}") for i, p in enumerate(prefixes)])
    matching = [p for p in prefixes if path.startswith(p)]
    route = table.match("GET", path)
    if not matching:
        assert route is None
    else:
        assert route is not None and route.prefix == max(matching, key=len)
        assert route.service == f"s{prefixes.index(route.prefix)}"
