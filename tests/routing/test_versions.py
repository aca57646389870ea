"""API versions: reading the one a request asks for, and routes matching on it (rule 4 of the
route table: a prefix asked for a version it does not serve answers with its known ones)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from surge.routing import RouteTable
from surge.routing.versions import VersionReader


@dataclass
class RouteConfig:
    prefix: str
    service: str
    version: str | None = None
    host: str | None = None
    methods: list[str] | None = None
    headers: dict[str, str] | None = None
    strip_prefix: bool = False


@pytest.mark.parametrize(("headers", "query", "version"), [
    pytest.param([], "", "1", id="neither: the default"),
    pytest.param([(b"API-Version", b"2")], "", "2", id="the header"),
    pytest.param([(b"api-version", b" 2 ")], "", "2", id="header name in any case, trimmed"),
    pytest.param([], "a=b&version=3", "3", id="the query parameter"),
    pytest.param([], "version=2024-01-01%2B1", "2024-01-01+1", id="query value decoded"),
    pytest.param([(b"API-Version", b"2")], "version=3", "2", id="header before query"),
    pytest.param([], "myversion=3&versions=4", "1", id="only the exact parameter name"),
    pytest.param([(b"API-Versions", b"2")], "", "1", id="only the exact header name"),
])
def test_the_version_is_read_from_the_header_then_the_query_then_the_default(
        headers, query, version):
    assert VersionReader("API-Version", "version", "1").read(headers, query) == version


def test_a_reader_without_a_header_or_a_default_reads_the_query_or_nothing():
    reader = VersionReader(None, "v", None)
    assert reader.read([(b"API-Version", b"2")], "") is None
    assert reader.read([], "v=2") == "2"


TABLE = RouteTable([
    RouteConfig("/", "root"),
    RouteConfig("/api/", "api-any"),
    RouteConfig("/api/", "api-v2", version="2"),
    RouteConfig("/api/", "api-v3-writes", version="3", methods=["POST"]),
    RouteConfig("/shop/", "shop-v1", version="1"),
    RouteConfig("/shop/", "shop-v2", version="2"),
])


@pytest.mark.parametrize(("method", "path", "version", "service"), [
    pytest.param("GET", "/api/x", "2", "api-v2", id="a versioned route beats an unversioned one"),
    pytest.param("GET", "/api/x", "1", "api-any", id="an unversioned route serves any version"),
    pytest.param("GET", "/api/x", None, "api-any", id="and requests naming none"),
    pytest.param("POST", "/api/x", "3", "api-v3-writes", id="version and methods together"),
    pytest.param("GET", "/api/x", "3", "api-any", id="a version whose route does not fit"),
    pytest.param("GET", "/shop/cart", "1", "shop-v1", id="v1"),
    pytest.param("GET", "/shop/cart", "2", "shop-v2", id="v2"),
])
def test_routes_match_on_the_version_as_one_more_condition(method, path, version, service):
    route = TABLE.match(method, path, version=version)
    assert route is not None and route.known_versions is None
    assert route.service == service


@pytest.mark.parametrize("version", ["3", None])
def test_a_prefix_asked_for_a_version_it_does_not_serve_lists_the_ones_it_does(version):
    # Never a fall back to the shorter `/` prefix: the client asked /shop/ for a version.
    miss = TABLE.match("GET", "/shop/cart", version=version)
    assert miss is not None and miss.known_versions == ("1", "2")
    assert miss.prefix == "/shop/"


def test_without_versioned_routes_nothing_changes():
    table = RouteTable([RouteConfig("/", "root"), RouteConfig("/api/", "api")])
    route = table.match("GET", "/api/x", version="9")
    assert route is not None and route.service == "api" and route.known_versions is None
