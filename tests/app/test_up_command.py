"""`surge up` as a user runs it, where it must refuse in one line (exit 2, no traceback): a
taken gateway or admin port, a replica command not on PATH, a bad file; and where it must
not speak too soon: the URL banner comes once its sockets are bound (issue 10, points 5-6)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli import SURGE, fails_in_one_line, surge
from support.processes import free_port, port_open

pytestmark = pytest.mark.integration


@pytest.fixture
def taken() -> Iterator[int]:
    """A port this test process listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port()))
        sock.listen()
        yield sock.getsockname()[1]


def config(tmp_path: Path, listen: int, admin: int, workers: int = 1,
           upstream: int | None = None) -> Path:
    path = tmp_path / "surge.yaml"
    path.write_text(f"""
gateway: {{listen: "127.0.0.1:{listen}", admin: "127.0.0.1:{admin}", workers: {workers},
          access_log: "off"}}
services:
  api: {{upstreams: ["127.0.0.1:{upstream or free_port()}"],
        health: {{path: /healthz, interval: 2s, timeout: 1s}}}}
routes:
  - {{prefix: /, service: api}}
""")
    return path


def holder() -> str:
    return f"(pid {os.getpid()})"


@pytest.mark.parametrize("workers", [1, 2])
def test_a_taken_gateway_port_is_one_line_naming_it_and_its_holder(tmp_path, taken, workers):
    path = config(tmp_path, taken, free_port(), workers)
    line = fails_in_one_line(surge("up", str(path), cwd=tmp_path, timeout=30), 2)
    assert line.startswith(f"{path}: cannot listen on 127.0.0.1:{taken} (gateway.listen[0]): "
                           "in use by ")
    assert line.endswith(holder())


def test_a_taken_admin_port_is_one_line_naming_it_and_its_holder(tmp_path, taken):
    path = config(tmp_path, free_port(), taken)
    line = fails_in_one_line(surge("up", str(path), cwd=tmp_path, timeout=30), 2)
    assert f"cannot listen on 127.0.0.1:{taken} (gateway.admin): in use by " in line
    assert line.endswith(holder())


def test_a_command_not_on_path_is_refused_in_one_line(tmp_path):
    path = tmp_path / "surge.yaml"
    path.write_text("services:\n  api:\n    process: {command: 'no-such-program-here "
                    "--port {port}'}\nroutes:\n  - {prefix: /, service: api}\n"
                    f"gateway: {{listen: '127.0.0.1:{free_port()}'}}\n")
    line = fails_in_one_line(surge("up", str(path), cwd=tmp_path, timeout=30), 2)
    assert line == (f"{path}: api: command not found: 'no-such-program-here --port {{port}}' "
                    "(not on PATH here)")


@pytest.mark.parametrize(("text", "problem"), [
    ("gateway:\n  listen: [\n", ":3:1: while parsing a flow node"),
    (None, ": cannot read: No such file or directory"),
])
def test_a_problem_names_the_file_once(tmp_path, text, problem):
    path = tmp_path / "surge.yaml"
    if text is not None:
        path.write_text(text)
    line = fails_in_one_line(surge("up", str(path), cwd=tmp_path), 2)
    assert line.startswith(f"{path}{problem}") and line.count(str(path)) == 1


@pytest.fixture
def silent_upstream() -> Iterator[int]:
    """Accepts connections (the kernel does) and never answers: a health check waits for its
    timeout, which holds the gateway's first round, so it listens a second after starting."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port()))
        sock.listen(64)
        yield sock.getsockname()[1]


@pytest.mark.parametrize("workers", [1, 2])
def test_the_banner_comes_once_the_sockets_are_bound(tmp_path, silent_upstream, workers):
    listen, admin = free_port(), free_port()
    path = config(tmp_path, listen, admin, workers, upstream=silent_upstream)
    with (tmp_path / "surge.err").open("wb") as err:
        up = subprocess.Popen([str(SURGE), "up", str(path)], cwd=tmp_path, text=True,
                              stdout=subprocess.PIPE, stderr=err)
    try:
        deadline = time.monotonic() + 30
        for line in up.stdout:  # type: ignore[union-attr]
            if line.startswith("stop: Ctrl-C") or time.monotonic() > deadline:
                break
        bound = (port_open("127.0.0.1", listen), port_open("127.0.0.1", admin))
    finally:
        up.terminate()
        up.wait(30)
    assert bound == (True, True), (tmp_path / "surge.err").read_text()
