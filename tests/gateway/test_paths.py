"""Paths are normalised before routing, through a real gateway: for each request target, the
route it reaches (told by which upstream answers) and the target that upstream sees, under
each `gateway.paths` setting; refusals are counted 400s; `/raw/../st/echo` cannot dodge the
`/st` routes' `methods` or `rate_limit`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gateway.raw_upstream import RawUpstream
from gateway.stack import (
    Answer,
    Wire,
    assert_problem,
    failed_count,
    service,
    surge_yaml,
    with_changes,
)
from gateway.stack import (
    request as request_bytes,
)

pytestmark = pytest.mark.integration

ROUTES = [
    {"prefix": "/st/", "service": "st"},
    {"prefix": "/raw/", "service": "raw"},
    {"prefix": "/strip/", "service": "st", "strip_prefix": True},
    {"prefix": "/ro/", "service": "st", "methods": ["GET"]},
    {"prefix": "/limited/", "service": "st", "rate_limit": {"plan": "tight"}},
    {"prefix": "/hashed/", "service": "hashed"},
]


def _target_echo(name: bytes) -> Callable[[bytes], bytes]:
    """An upstream that answers with its name and the request target it was sent."""
    def answer(data: bytes) -> bytes:
        target = data.split(b" ", 2)[1]
        return (b"HTTP/1.1 200 OK\r\nX-Upstream: %s\r\nContent-Length: %d\r\n\r\n%s"
                % (name, len(target), target))
    return answer


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, RawUpstream]]:
    fleet = {name: RawUpstream(_target_echo(name.encode())) for name in ("st", "raw")}
    yield fleet
    for upstream in fleet.values():
        upstream.close()


def _start(stack: Any, upstreams: dict[str, RawUpstream], **paths: Any) -> Any:
    services = {name: service([u.address]) for name, u in upstreams.items()}
    services["hashed"] = service([u.address for u in upstreams.values()], balance="hash",
                                 hash_on="path")
    text = surge_yaml(services, ROUTES, **({"paths": paths} if paths else {}))

    def plans(data: dict[str, Any]) -> None:
        data["rate_limits"] = {"plans": {"anonymous": ["100/minute"], "tight": ["1/minute"]}}
    return stack.gateway(with_changes(text, plans))


@pytest.fixture(scope="module")
def default(stack, upstreams):
    return _start(stack, upstreams)


@pytest.fixture(scope="module")
def merging_keeping(stack, upstreams):
    return _start(stack, upstreams, merge_slashes=True, encoded_slash="keep")


@pytest.fixture(scope="module")
def original(stack, upstreams):
    return _start(stack, upstreams, forward="original")


def send(gw: Any, target: str, method: str = "GET") -> Answer:
    with Wire(gw.listen) as wire:
        wire.send(request_bytes(method, target))
        return wire.answer()


def reached(gw: Any, target: str, method: str = "GET") -> tuple[str, str]:
    """(the upstream that answered, the target it saw)."""
    got = send(gw, target, method)
    assert got.status == 200, got.body
    return got.header("x-upstream") or "", got.body.decode("latin-1")


# (gateway, request target, upstream reached, target it sees)
TABLE = [
    ("default", "/st/echo", "st", "/st/echo"),
    ("default", "/raw/../st/echo", "st", "/st/echo"),
    ("default", "/raw/%2e%2E/st/echo", "st", "/st/echo"),
    ("default", "/st/./a/../echo?x=/../y&z=%2F", "st", "/st/echo?x=/../y&z=%2F"),
    ("default", "/%73t/%7Euser", "st", "/st/~user"),
    ("default", "/st/a%2fb%20c", None, None),          # refused: encoded slash
    ("default", "/st/caf%c3%a9", "st", "/st/caf%C3%A9"),
    ("default", "/st/echo#frag", "st", "/st/echo"),
    ("default", "/st/echo?q=1#frag?x", "st", "/st/echo?q=1"),
    ("default", "/raw//st/echo", "raw", "/raw//st/echo"),
    ("default", "/raw/../strip/echo", "st", "/echo"),
    ("default", "/st/?", "st", "/st/?"),
    ("merging_keeping", "//st//echo", "st", "/st/echo"),
    ("merging_keeping", "/raw//..//st/echo", "st", "/st/echo"),
    ("merging_keeping", "/st/a%2fb", "st", "/st/a%2Fb"),
    ("merging_keeping", "/st/a%5cb/../c", "st", "/st/c"),
    ("original", "/raw/../st/echo", "st", "/raw/../st/echo"),
    ("original", "/st/%7Euser/a%2db?sig=%2B", "st", "/st/%7Euser/a%2db?sig=%2B"),
    ("original", "/strip/%7Eu", "st", "/%7Eu"),
    ("original", "/raw/../strip/echo", "st", "/echo"),   # cut only where the bytes spell it
    ("original", "/st/echo#frag", "st", "/st/echo"),
]


@pytest.mark.parametrize(("which", "target", "upstream", "seen"), TABLE)
def test_the_route_reached_and_the_path_the_upstream_sees(request, which, target, upstream,
                                                          seen):
    gw = request.getfixturevalue(which)
    if upstream is None:
        refused(gw, target, "encoded slash")
    else:
        assert reached(gw, target) == (upstream, seen)


def refused(gw: Any, target: str, why: str) -> None:
    before = failed_count(gw.admin_url, "invalid_path")
    got = send(gw, target)
    document = assert_problem(got.status, got.header("content-type"), got.body, 400)
    assert why in document["detail"]
    assert failed_count(gw.admin_url, "invalid_path") == before + 1


@pytest.mark.parametrize(("target", "why"), [
    ("/..", "climbs above the root"),
    ("/raw/../../st/echo", "climbs above the root"),
    ("/%2e%2e/st/echo", "climbs above the root"),
    ("/st/a%2Fb", "encoded slash"),
    ("/st/a%5Cb", "encoded slash"),
    ("/st/a%zz", "malformed percent-encoding"),
])
def test_a_path_with_no_one_reading_is_a_counted_400_and_the_connection_serves_on(
        default, target, why):
    refused(default, target, why)
    with Wire(default.listen) as wire:
        wire.send(request_bytes("GET", target) + request_bytes("GET", "/st/echo"))
        assert wire.answer().status == 400
        assert wire.answer().body == b"/st/echo"


def test_a_methods_restricted_route_is_not_sidestepped(default):
    assert reached(default, "/raw/../ro/x") == ("st", "/ro/x")
    # Before: routed by its text to `/raw/`, and forwarded with the dot-segments to an
    # upstream that may resolve them to `/ro/x`.
    assert send(default, "/raw/../ro/x", "POST").status == 404


def test_a_rate_limited_route_is_not_sidestepped(default):
    assert send(default, "/limited/a").status == 200
    assert send(default, "/raw/../limited/a").status == 429
    assert send(default, "/raw/%2E%2E/limited/a").status == 429


def test_hashing_on_the_path_sends_two_spellings_of_a_path_to_one_upstream(default):
    for i in range(8):
        plain = reached(default, f"/hashed/{i}")
        assert reached(default, f"/hashed/x/../%7E/../{i}") == plain
