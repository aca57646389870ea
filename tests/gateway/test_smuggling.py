"""The hardened edge: request-smuggling and desync vectors, each a real byte string sent on a
real socket, are refused with a problem+json answer, counted under their reason, the connection
closed with nothing answered after the refusal (unless the request was read whole and framed
without doubt), and the gateway serves the next client. On the upstream side, a response that
splits or frames ambiguously is a 502, never forwarded, and a connection that answered more
than it was asked is never reused."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from gateway.raw_upstream import RawUpstream
from gateway.stack import Wire, assert_problem, failed_count, request, service, surge_yaml

pytestmark = pytest.mark.integration

# A second request hidden where a lenient parser would find it: if the refused request were
# framed differently by anyone, this one would get an answer of its own.
HIDDEN = b"GET /name HTTP/1.1\r\nHost: t\r\n\r\n"
POST = b"POST /echo HTTP/1.1\r\nHost: t\r\n"
CHUNKED = POST + b"Transfer-Encoding: chunked\r\n\r\n"
GET = b"GET /name HTTP/1.1\r\nHost: t\r\n"


@dataclass(frozen=True)
class Vector:
    name: str
    data: bytes
    status: int = 400
    reason: str = "bad_request"
    # False for a request refused after it was read whole and framed without doubt: the
    # connection may then serve the next request.
    closes: bool = True


VECTORS = [
    # Two framings, or one framing said twice.
    Vector("content-length-then-chunked",
           POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + HIDDEN),
    Vector("chunked-then-content-length",
           POST + b"Transfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n" + HIDDEN),
    Vector("duplicate-equal-content-length",
           POST + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
    Vector("differing-content-lengths",
           POST + b"Content-Length: 5\r\nContent-Length: 37\r\n\r\nhello" + HIDDEN),
    Vector("content-length-list", POST + b"Content-Length: 5, 37\r\n\r\nhello" + HIDDEN),
    Vector("content-length-with-sign", POST + b"Content-Length: +5\r\n\r\nhello"),
    Vector("negative-content-length", POST + b"Content-Length: -1\r\n\r\n" + HIDDEN),
    Vector("hex-content-length", POST + b"Content-Length: 0x5\r\n\r\nhello"),
    Vector("content-length-overflow",
           POST + b"Content-Length: 18446744073709551621\r\n\r\nhello"),
    # Transfer-Encoding other than one final `chunked`.
    Vector("chunked-then-gzip", POST + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"),
    Vector("gzip-only", POST + b"Transfer-Encoding: gzip\r\n\r\n" + HIDDEN),
    Vector("gzip-then-chunked", POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
           501, "unsupported_transfer_coding"),
    Vector("chunkedx", POST + b"Transfer-Encoding: chunkedx\r\n\r\n0\r\n\r\n" + HIDDEN),
    Vector("xchunked", POST + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + HIDDEN),
    Vector("chunked-twice", POST + b"Transfer-Encoding: chunked\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    Vector("vertical-tab-before-chunked",
           POST + b"Transfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n" + HIDDEN),
    Vector("space-before-colon-of-transfer-encoding",
           POST + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + HIDDEN),
    Vector("chunked-folded-onto-a-second-line",
           POST + b"Transfer-Encoding: gzip\r\n , chunked\r\n\r\n0\r\n\r\n" + HIDDEN),
    Vector("transfer-encoding-as-first-header-after-a-space",
           b"POST /echo HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: t\r\n\r\n0\r\n\r\n"),
    Vector("empty-transfer-encoding", POST + b"Transfer-Encoding: \r\n\r\n" + HIDDEN),
    Vector("chunked-in-http10",
           b"POST /echo HTTP/1.0\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    # Chunk sizes and extensions.
    Vector("negative-chunk-size", CHUNKED + b"-1\r\nx\r\n0\r\n\r\n"),
    Vector("chunk-size-overflow", CHUNKED + b"10000000000000005\r\nhello\r\n0\r\n\r\n"),
    Vector("chunk-size-with-0x", CHUNKED + b"0x5\r\nhello\r\n0\r\n\r\n"),
    Vector("chunk-data-without-crlf", CHUNKED + b"5\r\nhelloX0\r\n\r\n" + HIDDEN),
    Vector("chunk-size-with-trailing-space", CHUNKED + b"5 \r\nhello\r\n0\r\n\r\n"),
    Vector("chunk-size-with-leading-space", CHUNKED + b" 5\r\nhello\r\n0\r\n\r\n"),
    Vector("empty-chunk-size", CHUNKED + b"\r\nhello\r\n0\r\n\r\n"),
    Vector("empty-chunk-extension", CHUNKED + b"5;\r\nhello\r\n0\r\n\r\n"),
    Vector("chunk-extension-ended-by-bare-lf", CHUNKED + b"5;a=b\nhello\r\n0\r\n\r\n"),
    Vector("chunk-extension-with-unterminated-quote",
           CHUNKED + b'5;a="b\r\nhello\r\n0\r\n\r\n'),
    Vector("chunk-extension-with-nul", CHUNKED + b"5;a\x00=b\r\nhello\r\n0\r\n\r\n"),
    Vector("chunk-lines-ended-by-bare-lf", CHUNKED + b"5\nhello\n0\n\n"),
    # Line endings, folding, whitespace, NUL and controls in the head.
    Vector("bare-cr-between-headers", GET + b"X-A: 1\rX-B: 2\r\n\r\n"),
    Vector("bare-lf-between-headers", GET + b"X-A: 1\nTransfer-Encoding: chunked\r\n\r\n"),
    Vector("bare-lf-line-endings", b"GET /name HTTP/1.1\nHost: t\n\n"),
    Vector("obs-fold-with-space", GET + b"X-A: a\r\n b\r\n\r\n"),
    Vector("obs-fold-with-tab", GET + b"X-A: a\r\n\tb\r\n\r\n"),
    Vector("space-before-colon", b"GET /name HTTP/1.1\r\nHost : t\r\n\r\n"),
    Vector("tab-before-colon", POST + b"Content-Length\t: 5\r\n\r\nhello"),
    Vector("nul-in-target", b"GET /na\x00me HTTP/1.1\r\nHost: t\r\n\r\n"),
    Vector("nul-in-header-name", GET + b"X-\x00A: 1\r\n\r\n"),
    Vector("nul-in-header-value", GET + b"X-A: a\x00b\r\n\r\n"),
    Vector("control-byte-in-header-value", GET + b"X-A: a\x01b\r\n\r\n"),
    Vector("two-host-headers", b"GET /name HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
           reason="invalid_host"),
    Vector("host-with-a-path", b"GET /name HTTP/1.1\r\nHost: t/admin\r\n\r\n",
           reason="invalid_host"),
    # Targets, methods and versions the gateway does not serve.
    # An absolute-form target is served when it names the Host (test_proxy_musts.py); one
    # naming another host would say two things about where the request goes.
    Vector("absolute-form-naming-another-host",
           b"GET http://evil/name HTTP/1.1\r\nHost: t\r\n\r\n",
           reason="invalid_target", closes=False),
    Vector("absolute-form-naming-another-port",
           b"GET http://t:8080/name HTTP/1.1\r\nHost: t\r\n\r\n",
           reason="invalid_target", closes=False),
    Vector("asterisk-form-target", b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n",
           reason="invalid_target", closes=False),
    Vector("connect", b"CONNECT evil:443 HTTP/1.1\r\nHost: evil:443\r\n\r\n",
           501, "method_not_implemented"),
    Vector("lower-case-method", b"get /name HTTP/1.1\r\nHost: t\r\n\r\n"),
    Vector("unknown-method", b"SMUGGLE /name HTTP/1.1\r\nHost: t\r\n\r\n"),
    Vector("http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    Vector("http2-version-on-a-text-request", b"GET /name HTTP/2.0\r\nHost: t\r\n\r\n",
           505, "http_version"),
    Vector("http09-request", b"GET /name\r\n\r\n", 505, "http_version"),
    # Limits.
    Vector("too-many-headers",
           GET + b"".join(b"X-%d: 1\r\n" % i for i in range(101)) + b"\r\n",
           431, "header_too_large"),
    Vector("header-line-over-8kib", GET + b"X-Big: " + b"x" * 8200 + b"\r\n\r\n",
           431, "header_too_large"),
    Vector("target-over-8kib", b"GET /" + b"a" * 8200 + b" HTTP/1.1\r\nHost: t\r\n\r\n",
           414, "url_too_long"),
]


@pytest.fixture(scope="module")
def gw(stack, scripted):
    (good,) = stack.upstreams(1, names=["good"])
    return stack.gateway(surge_yaml(
        {"good": service([good]), "scripted": service([scripted.address])},
        [{"prefix": "/", "service": "good"},
         {"prefix": "/scripted/", "service": "scripted", "strip_prefix": True}],
        timeouts={"client_header": "2s", "upstream": "2s"}))


def test_the_corpus_holds_at_least_thirty_distinct_inputs():
    assert len(VECTORS) >= 30
    assert len({v.data for v in VECTORS}) == len({v.name for v in VECTORS}) == len(VECTORS)


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.name)
def test_a_smuggling_vector_is_refused_counted_and_its_connection_closed(gw, vector):
    before = failed_count(gw.admin_url, vector.reason)
    with Wire(gw.listen) as wire:
        wire.send(vector.data)
        answer = wire.answer()
        assert_problem(answer.status, answer.header("content-type"), answer.body, vector.status)
        if vector.closes:
            assert answer.header("connection") == "close"
            assert wire.closed_by_peer(within=3.0)
            assert wire.buffer == b"", "something was answered after the refusal"
        else:
            wire.send(request("GET", "/name"))
            assert wire.answer().body == b"good"
    assert failed_count(gw.admin_url, vector.reason) == before + 1
    assert httpx.get(f"{gw.url}/name", timeout=5).text == "good"


@pytest.mark.parametrize("ahead, refused", [
    (request("GET", "/slow?ms=300"), b"GARBAGE\r\n\r\n"),
    (request("GET", "/bytes/2000000"), POST + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n"),
    (request("GET", "/slow?ms=300"), CHUNKED + b"5\r\nhelloX0\r\n\r\n"),
], ids=["garbage-behind-a-slow-answer", "two-lengths-behind-a-streaming-answer",
        "bad-chunk-behind-a-slow-answer"])
def test_a_refused_request_behind_a_pipelined_one_is_answered_after_it(gw, ahead, refused):
    # Answered at once, the refusal would be read as the answer to the request ahead of it.
    with Wire(gw.listen) as wire:
        wire.send(ahead + refused + HIDDEN)
        first = wire.answer()
        assert first.status == 200 and first.body
        second = wire.answer()
        assert_problem(second.status, second.header("content-type"), second.body, 400)
        assert wire.closed_by_peer(within=3.0)
        assert wire.buffer == b""


@pytest.mark.parametrize("spelling", [b"chunked", b"CHUNKED", b" \tchunked", b"chunked "])
def test_chunked_with_optional_whitespace_or_any_case_is_reframed_for_the_upstream(gw, spelling):
    # RFC 9110 allows whitespace around a field value and any case in a coding name. The body is
    # decoded here and re-framed (`Transfer-Encoding: chunked`, written by the gateway), so no
    # upstream parser ever sees this spelling and none can read the framing differently.
    with Wire(gw.listen) as wire:
        wire.send(POST + b"Transfer-Encoding:" + spelling + b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        answer = wire.answer()
    assert (answer.status, answer.body) == (200, b"hello")


def test_limits_just_under_the_edge_are_served(gw):
    many = {f"X-{i}": "1" for i in range(98)}   # with Host: 99 headers
    long_line = {"X-Big": "x" * 8000}
    long_target = "/name?" + "q" * 8000
    with Wire(gw.listen) as wire:
        for data in (request("GET", "/name", many), request("GET", "/name", long_line),
                     request("GET", long_target)):
            wire.send(data)
            assert wire.answer().status == 200


# -- the upstream side -----------------------------------------------------------------------

RESPONSES = {
    "length-and-chunked": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "differing-lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
    "bare-lf-split": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\n"
                     b"Set-Cookie: evil=1\r\n\r\nok",
    "bare-cr-split": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r"
                     b"Set-Cookie: evil=1\r\n\r\nok",
    "lf-only-lines": b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
    "obs-fold": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\n Set-Cookie: evil=1\r\n\r\nok",
    "nul-in-value": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: a\x00b\r\n\r\nok",
    "space-before-colon": b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
    "four-digit-status": b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok",
    "garbage": b"garbage\r\n\r\n",
    # A switch to another protocol that the request never asked for: tunnelled, it would carry
    # the client's next requests to this upstream past routing.
    "unasked-switch": b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                      b"Upgrade: websocket\r\n\r\n",
}
FRESH = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Fresh: 1\r\n\r\nfresh"
# A response followed, in the same write, by a second one nobody asked for.
TWO_ANSWERS = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" \
              b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nX-Stale: 1\r\n\r\nevil"


class ScriptedUpstream(RawUpstream):
    """A raw keep-alive server: answers each request with the bytes RESPONSES holds for its
    path (`/<key>`), or `fresh` with a Content-Length, until the gateway closes."""

    def __init__(self) -> None:
        super().__init__(lambda _: None)

    def serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5.0)
            pending = b""
            try:
                while data := conn.recv(65536):
                    pending += data
                    while b"\r\n\r\n" in pending:   # bodiless requests only
                        head, _, pending = pending.partition(b"\r\n\r\n")
                        path = head.split(b" ", 2)[1].decode().lstrip("/")
                        conn.sendall(RESPONSES.get(path, FRESH))
            except (OSError, IndexError):
                pass


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedUpstream]:
    server = ScriptedUpstream()
    yield server
    server.close()


@pytest.mark.parametrize("key", sorted(RESPONSES))
def test_an_upstream_response_that_splits_or_frames_ambiguously_is_a_502(gw, key):
    before = failed_count(gw.admin_url, "upstream_garbage")
    with Wire(gw.listen) as wire:
        wire.send(request("GET", f"/scripted/{key}"))
        answer = wire.answer()
    assert_problem(answer.status, answer.header("content-type"), answer.body, 502)
    assert answer.header("set-cookie") is None
    assert failed_count(gw.admin_url, "upstream_garbage") == before + 1
    assert httpx.get(f"{gw.url}/name", timeout=5).text == "good"


def test_an_upstream_connection_that_answered_twice_to_one_request_is_not_reused(gw, scripted):
    # Reused, it would hand the unasked-for answer (or a head spliced from it) to a later
    # request, perhaps another client's.
    RESPONSES["two-answers"] = TWO_ANSWERS
    try:
        with httpx.Client(base_url=gw.url, timeout=5) as client:
            assert client.get("/scripted/two-answers").text == "ok"
            for _ in range(3):
                answer = client.get("/scripted/fresh")
                assert (answer.status_code, answer.text) == (200, "fresh")
                assert answer.headers.get("x-fresh") == "1"
                assert "x-stale" not in answer.headers
    finally:
        del RESPONSES["two-answers"]


def test_an_h2c_upgrade_is_served_as_plain_http_and_never_forwarded(gw):
    # A tunnel to an upstream that speaks h2c would carry requests past routes and policies
    # ("h2c smuggling"); only WebSocket is tunnelled. curl --http2 sends this on http:// URLs.
    with Wire(gw.listen) as wire:
        wire.send(request("GET", "/headers", {
            "Connection": "Upgrade, HTTP2-Settings", "Upgrade": "h2c",
            "HTTP2-Settings": "AAMAAABkAARAAAAAAAIAAAAA"}))
        answer = wire.answer()
        assert answer.status == 200
        received = {name.lower() for name in answer.json()}
        assert not received & {"upgrade", "http2-settings"}, received
        assert wire.closed_by_peer(within=3.0)   # its parser is past an upgrade: not reused
