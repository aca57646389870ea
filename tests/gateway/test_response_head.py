"""Reading an upstream's response head as bytes (pure): what is kept, what is cut, and that a
head repeated byte for byte on one pool is read once."""

from __future__ import annotations

import httpx
import pytest

from gateway.raw_upstream import RawUpstream
from gateway.stack import service, surge_yaml
from surge.http.headers import ResponseHead

NGINX = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 26 Nov 2026 14:45:14 GMT\r\n"
         b"Content-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive")


def test_end_to_end_lines_are_kept_in_order_and_hop_by_hop_lines_cut():
    head = ResponseHead(NGINX)
    assert head.reason == b"OK"
    assert head.length == 2 and not head.chunked
    assert head.block == (b"\r\nServer: nginx/1.22.1\r\nDate: Thu, 26 Nov 2026 14:45:14 GMT"
                          b"\r\nContent-Type: text/plain\r\nContent-Length: 2")


def test_every_hop_by_hop_header_goes_whatever_its_case_and_where_it_stands():
    raw = (b"HTTP/1.1 200 Fine Thanks\r\nKEEP-ALIVE: timeout=5\r\nA: 1\r\nTransfer-Encoding: "
           b"chunked\r\nTE: trailers\r\nTrailer: X\r\nUpgrade: h2c\r\nProxy-Connection: x\r\n"
           b"Proxy-Authenticate: Basic\r\nProxy-Authorization: y\r\nB: 2\r\nconnection: close")
    head = ResponseHead(raw)
    assert head.block == b"\r\nA: 1\r\nB: 2"
    assert head.chunked and head.length == -1
    assert head.reason == b"Fine Thanks"


def test_headers_a_connection_header_names_are_cut_too():
    raw = (b"HTTP/1.1 200 OK\r\nX-Secret: 1\r\nX-Kept: 2\r\nConnection: close, x-secret"
           b"\r\nx-secret: 3")
    assert ResponseHead(raw).block == b"\r\nX-Kept: 2"


def test_names_that_only_start_like_a_hop_by_hop_one_are_kept():
    raw = b"HTTP/1.1 200 OK\r\nTE-Extra: 1\r\nConnectionless: 2\r\nX-Connection: 3"
    assert ResponseHead(raw).block == b"\r\nTE-Extra: 1\r\nConnectionless: 2\r\nX-Connection: 3"


def test_a_head_without_reason_or_headers():
    head = ResponseHead(b"HTTP/1.1 204")
    assert (head.reason, head.block, head.length) == (b"", b"", -1)


def test_an_unreadable_content_length_counts_as_none():
    assert ResponseHead(b"HTTP/1.1 200 OK\r\nContent-Length: +2").length == -1


def test_the_status_line_is_made_once_per_head():
    head = ResponseHead(NGINX)
    first = head.status_line(200)
    assert first.startswith(b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n")
    assert first.endswith(b"Content-Length: 2\r\nX-Request-ID: ")
    assert head.status_line(200) is first


@pytest.mark.integration
def test_each_answer_on_a_reused_connection_keeps_its_own_head(gateway):
    """Heads repeated byte for byte are read once per pool; ones that differ never mix."""
    heads = [b"HTTP/1.1 200 OK\r\nX-Turn: %d\r\nContent-Length: 2\r\n\r\nok" % (i // 2)
             for i in range(6)]
    turn = iter(heads)
    server = RawUpstream(lambda _: next(turn))
    try:
        gw = gateway(surge_yaml({"app": service([server.address])},
                                [{"prefix": "/", "service": "app"}]))
        with httpx.Client(timeout=5) as client:
            seen = [client.get(f"{gw.url}/").headers["x-turn"] for _ in range(6)]
    finally:
        server.close()
    assert seen == ["0", "0", "1", "1", "2", "2"]
    assert len(server.connections) == 1  # all on one pooled connection
