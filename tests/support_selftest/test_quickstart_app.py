"""The quickstart backend runs as a real replica and answers what the quickstart promises."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from support.processes import ManagedProcess, free_port, wait_for_port

pytestmark = pytest.mark.integration

APP = Path(__file__).resolve().parents[2] / "examples" / "quickstart" / "app.py"


@pytest.fixture
def replica(tmp_path):
    port = free_port()
    process = ManagedProcess("quickstart", [sys.executable, str(APP), "--port", str(port),
                                            "--name", "a"], tmp_path)
    process.spawn()
    with process:
        wait_for_port("127.0.0.1", port)
        yield f"http://127.0.0.1:{port}", port


def test_root_says_hello_with_the_replica_name_and_port(replica):
    url, port = replica
    assert httpx.get(url + "/").json() == {
        "message": "hello from surge", "replica": "a", "port": port}


def test_healthz_work_and_echo_answer(replica):
    url, _ = replica
    assert httpx.get(url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(url + "/work?ms=20").json()["ms"] == 20
    assert httpx.get(url + "/work?ms=lots").status_code == 400
    assert httpx.post(url + "/echo", content=b"ping").content == b"ping"
