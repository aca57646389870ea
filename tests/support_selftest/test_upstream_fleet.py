"""The test upstream answers every endpoint as documented, and the fleet helpers start, kill
and restart real replica processes."""

from __future__ import annotations

import json
import os
import signal
import socket

import httpx
import pytest
from websockets.sync.client import connect

from support.processes import (
    ProcessFailed,
    UpstreamProcess,
    free_port,
    process_gone,
    rss_of,
    wait_for_port,
)
from support.upstream_app import pattern

pytestmark = pytest.mark.integration


def test_each_replica_answers_its_own_name_in_body_and_header(fleet):
    for upstream in fleet:
        response = httpx.get(f"{upstream.url}/name")
        assert response.text == upstream.name
        assert response.headers["x-upstream-name"] == upstream.name


def test_healthz_is_ok_until_the_sick_file_appears(fleet):
    upstream = fleet[0]
    assert httpx.get(f"{upstream.url}/healthz").status_code == 200
    upstream.make_sick()
    try:
        assert httpx.get(f"{upstream.url}/healthz").status_code == 503
        assert httpx.get(f"{upstream.url}/name").status_code == 200
    finally:
        upstream.make_healthy()
    assert httpx.get(f"{upstream.url}/healthz").status_code == 200


def test_echo_streams_a_chunked_body_back_piece_by_piece(fleet):
    pieces = [b"first-", b"second-", b"x" * 100_000]
    with httpx.Client() as client:
        response = client.put(f"{fleet[0].url}/echo", content=iter(pieces))
    assert response.status_code == 200
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.content == b"".join(pieces)


def test_echo_keeps_the_content_length_of_a_sized_body(fleet):
    response = httpx.post(f"{fleet[0].url}/echo", content=b"hello")
    assert response.headers["content-length"] == "5"
    assert response.content == b"hello"


def test_bytes_streams_exactly_n_bytes_of_the_pattern_chunked(fleet):
    n = 3 * 64 * 1024 + 17
    response = httpx.get(f"{fleet[0].url}/bytes/{n}")
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.content == pattern(n)


def test_slow_waits_about_the_asked_time(fleet):
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{fleet[0].url}/slow?ms=500", timeout=0.1)
    assert httpx.get(f"{fleet[0].url}/slow?ms=10").text == "slow"


@pytest.mark.parametrize("code", [200, 204, 404, 500, 503])
def test_status_answers_the_asked_status(fleet, code):
    assert httpx.get(f"{fleet[0].url}/status/{code}").status_code == code


def test_headers_reports_what_the_upstream_received(fleet):
    response = httpx.get(f"{fleet[0].url}/headers", headers={"X-Forwarded-For": "10.0.0.1"})
    assert response.json()["x-forwarded-for"] == "10.0.0.1"


def test_unknown_paths_are_404(fleet):
    assert httpx.get(f"{fleet[0].url}/nope").status_code == 404


def test_websocket_echoes_text_and_binary(fleet):
    with connect(f"ws://{fleet[1].address}/ws") as ws:
        ws.send("hi")
        assert ws.recv() == "hi"
        ws.send(b"\x00\x01")
        assert ws.recv() == b"\x00\x01"


def test_record_appends_request_id_and_body_per_delivery(fleet):
    record_file = fleet[0].env["UPSTREAM_RECORD_FILE"]
    for upstream, request_id in [(fleet[0], "r1"), (fleet[1], "r2"), (fleet[0], "r1")]:
        response = httpx.post(f"{upstream.url}/record", content=b"job",
                              headers={"X-Request-ID": request_id})
        assert response.status_code == 200
    with open(record_file) as lines:
        records = [json.loads(line) for line in lines]
    assert [(r["name"], r["request_id"], r["body"]) for r in records] == [
        ("a", "r1", "job"), ("b", "r2", "job"), ("a", "r1", "job")]


def test_kill9_drops_the_replica_and_restart_brings_it_back_on_its_port(upstreams):
    (upstream,) = upstreams(1)
    old_pid = upstream.pid
    upstream.kill9()
    assert not upstream.running
    assert upstream.proc.returncode == -signal.SIGKILL
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{upstream.url}/name")
    upstream.restart()
    assert upstream.pid != old_pid
    assert httpx.get(f"{upstream.url}/name").text == upstream.name


def test_terminate_stops_the_replica_gracefully(upstreams):
    (upstream,) = upstreams(1)
    pid = upstream.pid
    # uvicorn re-raises SIGTERM after its graceful shutdown; -9 would mean it had to be killed.
    assert upstream.terminate() in (0, -signal.SIGTERM)
    assert process_gone(pid)


def test_a_replica_that_cannot_bind_fails_with_its_stderr(tmp_path):
    with socket.socket() as blocker:  # bound, not listening: the replica's bind fails
        blocker.bind(("127.0.0.1", 0))
        replica = UpstreamProcess("clash", blocker.getsockname()[1], tmp_path)
        replica.start()
        with pytest.raises(ProcessFailed) as failure:
            replica.wait_ready(timeout=10)
    assert "upstream-clash stderr" in str(failure.value)
    assert "address already in use" in str(failure.value).lower()
    assert not replica.running


def test_wait_for_port_times_out_on_a_closed_port():
    with pytest.raises(TimeoutError):
        wait_for_port("127.0.0.1", free_port(), timeout=0.2)


def test_rss_of_reports_a_plausible_resident_size(fleet):
    assert 5 * 2**20 < rss_of(fleet[0].pid) < 2**30
    assert rss_of(os.getpid(), children=True) > rss_of(os.getpid())
