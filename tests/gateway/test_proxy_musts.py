"""What RFC 9110 and 9112 require of a proxy, on raw sockets: a `Date` on every response (the
upstream's kept, one added where it sent none, and on Surge's own answers and the admin API's);
absolute-form request targets accepted when they name the Host's authority; 1xx informational
answers (103 Early Hints) forwarded before the final one, but never to an HTTP/1.0 client, and
never the upstream's own 100; and a request whose 103 went out is never retried or hedged."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime

import httpx
import pytest

from gateway.raw_upstream import RawUpstream
from gateway.stack import (
    Wire,
    assert_problem,
    failed_count,
    fast_health,
    request,
    service,
    surge_yaml,
)
from surge.http.headers import ResponseHead, origin_form

pytestmark = pytest.mark.integration

OLD_DATE = "Thu, 01 Jan 2026 00:00:00 GMT"
HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
# What the scripted upstream answers, by the request path's last segment. `die` closes the
# connection after the bytes, before any final answer.
SCRIPT = {
    "undated": OK,
    "dated": b"HTTP/1.1 200 OK\r\nDate: " + OLD_DATE.encode() + b"\r\nContent-Length: 2\r\n\r\nok",
    "unavailable": b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
    "hints": HINTS + OK,
    "continue": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                b"Connection: close\r\n\r\nok",
    "die": HINTS,
    "slow-after-hints": HINTS,
}


def _content_length(head: bytes) -> int:
    for line in head.lower().split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name == b"content-length":
            return int(value)
    return 0


class ScriptedUpstream(RawUpstream):
    """A keep-alive raw server answering each request head from SCRIPT; it counts the requests
    each path got, and sends `slow-after-hints` its 200 half a second after its 103."""

    def __init__(self) -> None:
        super().__init__(lambda _: None)
        self.seen: dict[str, int] = {}

    def serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5.0)
            pending = b""
            try:
                while data := conn.recv(65536):
                    pending += data
                    while b"\r\n\r\n" in pending:
                        head, _, rest = pending.partition(b"\r\n\r\n")
                        length = _content_length(head)
                        if len(rest) < length:
                            break  # answer once the body is in, as a server reading it would
                        pending = rest[length:]
                        key = head.split(b" ", 2)[1].decode().rsplit("/", 1)[-1]
                        self.seen[key] = self.seen.get(key, 0) + 1
                        conn.sendall(SCRIPT.get(key, OK))
                        if key == "die":
                            return
                        if key == "slow-after-hints":
                            time.sleep(0.5)
                            conn.sendall(OK)
            except (OSError, IndexError):
                pass


@pytest.fixture(scope="module")
def scripted() -> Iterator[list[ScriptedUpstream]]:
    servers = [ScriptedUpstream(), ScriptedUpstream()]
    yield servers
    for server in servers:
        server.close()


@pytest.fixture(scope="module")
def sick() -> Iterator[RawUpstream]:
    server = RawUpstream(lambda _: b"HTTP/1.1 500 Internal Server Error\r\n"
                                   b"Content-Length: 0\r\n\r\n")
    yield server
    server.close()


@pytest.fixture(scope="module")
def gw(stack, scripted, sick):
    closed = socket.create_server(("127.0.0.1", 0))
    dead = f"127.0.0.1:{closed.getsockname()[1]}"
    closed.close()
    both = service([s.address for s in scripted], retry={"attempts": 2, "budget_percent": 100})
    return stack.gateway(surge_yaml(
        {"one": service([scripted[0].address]), "two": both, "dead": service([dead]),
         "sick": service([sick.address], health=fast_health())},
        [{"prefix": "/one/", "service": "one"},
         {"prefix": "/two/", "service": "two"},
         {"prefix": "/hedged/", "service": "two", "hedge": {"delay": "100ms"}},
         {"prefix": "/dead/", "service": "dead"},
         {"prefix": "/sick/", "service": "sick"}],
        timeouts={"upstream": "3s"}))


def date_of(answer) -> float:
    value = answer.header("date")
    assert value is not None, f"no Date in {answer.headers}"
    return parsedate_to_datetime(value).timestamp()


def one_date(answer) -> str:
    dates = [v for k, v in answer.headers if k.lower() == "date"]
    assert len(dates) == 1, answer.headers
    return dates[0]


def fetch(gw, data: bytes):
    with Wire(gw.listen) as wire:
        wire.send(data)
        return wire.answer()


# -- Date ------------------------------------------------------------------------------------

def test_a_forwarded_response_without_date_gets_the_current_one(gw):
    answer = fetch(gw, request("GET", "/one/undated"))
    assert (answer.status, answer.body) == (200, b"ok")
    one_date(answer)
    assert abs(date_of(answer) - time.time()) < 2


def test_a_forwarded_response_keeps_the_upstreams_date(gw):
    answer = fetch(gw, request("GET", "/one/dated"))
    assert one_date(answer) == OLD_DATE


def test_a_forwarded_error_without_date_gets_one(gw):
    answer = fetch(gw, request("GET", "/one/unavailable"))
    assert answer.status == 503
    assert abs(date_of(answer) - time.time()) < 2


@pytest.mark.parametrize("path, status", [("/nowhere", 404), ("/dead/x", 502),
                                          ("/sick/x", 503)])
def test_surges_own_answers_are_dated(gw, path, status):
    answer = fetch(gw, request("GET", path))
    assert_problem(answer.status, answer.header("content-type"), answer.body, status)
    one_date(answer)
    assert abs(date_of(answer) - time.time()) < 2


def test_a_refused_request_is_dated(gw):
    answer = fetch(gw, b"GET /one/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    assert answer.status == 400
    assert abs(date_of(answer) - time.time()) < 2


def test_the_admin_apis_answers_are_dated(gw):
    for path in ("/healthz", "/no-such-thing"):
        response = httpx.get(f"{gw.admin_url}{path}", timeout=5)
        assert abs(parsedate_to_datetime(response.headers["date"]).timestamp()
                   - time.time()) < 2


def test_the_date_is_found_in_the_same_pass_as_the_hop_by_hop_lines():
    assert ResponseHead(b"HTTP/1.1 200 OK\r\nDATE: x\r\nContent-Length: 1").dated
    assert not ResponseHead(b"HTTP/1.1 200 OK\r\nDate-Of-Birth: x\r\nX-Date: y").dated


# -- absolute-form ---------------------------------------------------------------------------

@pytest.mark.parametrize("target, host, origin", [
    (b"http://t/p?q=1", b"t", b"/p?q=1"),
    (b"HTTP://T:80/p", b"t", b"/p"),
    (b"http://t/p", b"t:80", b"/p"),
    (b"http://t:/p", b"t", b"/p"),
    (b"http://t", b"t", b"/"),
    (b"http://t?q", b"t", b"/?q"),
    (b"http://[::1]:8080/p", b"[::1]:8080", b"/p"),
    (b"http://t:8080/p", b"t", None),
    (b"http://evil/p", b"t", None),
    (b"http://user@t/p", b"t", None),
    (b"https://t/p", b"t", None),
    (b"http://t/p", None, None),
    (b"*", b"t", None),
])
def test_an_absolute_form_target_is_its_origin_form_when_it_names_the_host(target, host,
                                                                            origin):
    assert origin_form(target, host) == origin


def test_an_absolute_form_target_naming_the_host_is_routed_on_its_path(gw, scripted):
    before = scripted[0].seen.get("undated", 0)
    with Wire(gw.listen) as wire:
        wire.send(b"GET http://Gate.Example:80/one/undated HTTP/1.1\r\n"
                  b"Host: gate.example\r\n\r\n")
        answer = wire.answer()
        assert (answer.status, answer.body) == (200, b"ok")
        wire.send(request("GET", "/one/undated"))   # the connection stays usable
        assert wire.answer().status == 200
    assert scripted[0].seen["undated"] == before + 2


def test_an_absolute_form_target_is_forwarded_in_origin_form(stack):
    heads: list[bytes] = []
    upstream = RawUpstream(lambda data: heads.append(data) or OK)
    try:
        gw = stack.gateway(surge_yaml({"app": service([upstream.address])},
                                      [{"prefix": "/", "service": "app"}]))
        answer = fetch(gw, b"GET http://t/a/b?c=d HTTP/1.1\r\nHost: t\r\n\r\n")
        assert answer.status == 200
        assert heads[-1].startswith(b"GET /a/b?c=d HTTP/1.1\r\n")
    finally:
        upstream.close()


def test_an_absolute_form_target_naming_another_host_is_a_counted_400(gw):
    before = failed_count(gw.admin_url, "invalid_target")
    answer = fetch(gw, b"GET http://evil/one/undated HTTP/1.1\r\nHost: t\r\n\r\n")
    assert_problem(answer.status, answer.header("content-type"), answer.body, 400)
    assert failed_count(gw.admin_url, "invalid_target") == before + 1


# -- 1xx -------------------------------------------------------------------------------------

def test_a_103_reaches_an_http11_client_before_the_final_answer(gw):
    with Wire(gw.listen) as wire:
        wire.send(request("GET", "/one/hints"))
        hints = wire.answer()
        assert (hints.status, hints.reason) == (103, "Early Hints")
        assert hints.header("link") == "</style.css>; rel=preload"
        final = wire.answer()
        assert (final.status, final.body) == (200, b"ok")
        wire.send(request("GET", "/one/undated"))   # framing intact: the next request works
        assert wire.answer().status == 200


def test_an_http10_client_never_gets_a_1xx(gw):
    answer = fetch(gw, b"GET /one/hints HTTP/1.0\r\nHost: t\r\n\r\n")
    assert (answer.status, answer.body) == (200, b"ok")


def test_the_upstreams_100_is_swallowed_when_surge_answered_expect(gw):
    with Wire(gw.listen) as wire:
        wire.send(b"POST /one/continue HTTP/1.1\r\nHost: t\r\nContent-Length: 7\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        assert wire.answer().status == 100   # Surge's own
        wire.send(b"payload")
        final = wire.answer()
        assert (final.status, final.body) == (200, b"ok")
        wire.send(request("GET", "/one/undated"))
        assert wire.answer().status == 200   # no second 100 was left to be read as an answer


def test_a_request_whose_103_was_forwarded_is_not_retried_when_its_upstream_dies(gw, scripted):
    before = sum(s.seen.get("die", 0) for s in scripted)
    with Wire(gw.listen) as wire:
        wire.send(request("GET", "/two/die"))
        assert wire.answer().status == 103
        final = wire.answer()
        assert_problem(final.status, final.header("content-type"), final.body, 502)
    assert sum(s.seen.get("die", 0) for s in scripted) == before + 1


def test_a_request_whose_103_was_forwarded_is_not_hedged(gw, scripted):
    before = sum(s.seen.get("slow-after-hints", 0) for s in scripted)
    with Wire(gw.listen) as wire:
        wire.send(request("GET", "/hedged/slow-after-hints"))
        assert wire.answer().status == 103
        assert wire.answer().status == 200   # 0.5 s later: past the hedge delay of 100 ms
    assert sum(s.seen.get("slow-after-hints", 0) for s in scripted) == before + 1
