"""The runnable example in examples/ratelimit_asgi does what its README says, served by a
real uvicorn process on a real socket."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from support.processes import ManagedProcess, free_port, wait_for_port

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).parents[2] / "examples" / "ratelimit_asgi"


def test_the_asgi_example_limits_anonymous_clients_and_serves_keys_on_their_plan(tmp_path):
    app_dir = tmp_path / "example"
    shutil.copytree(EXAMPLE, app_dir, ignore=shutil.ignore_patterns(".surge", "__pycache__"))
    created = subprocess.run(
        [sys.executable, "-m", "surge.cli", "keys", "create", "--name", "alice", "--plan", "free"],
        cwd=app_dir, capture_output=True, text=True, timeout=30, check=True,
    )
    key = created.stdout.strip()
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "app:app", "--port", str(port),
            "--log-level", "warning"]
    with ManagedProcess("example", argv, tmp_path, cwd=app_dir) as server:
        server.spawn()
        wait_for_port("127.0.0.1", port, 15.0)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            anonymous = [client.get("/hello") for _ in range(6)]
            with_key = client.get("/hello", headers={"Authorization": f"Bearer {key}"})
            bad_key = client.get("/hello", headers={"X-API-Key": "sk_not_a_real_key_at_all"})
    assert [a.status_code for a in anonymous] == [200] * 5 + [429]
    assert anonymous[-1].headers["content-type"] == "application/problem+json"
    assert "retry-after" in anonymous[-1].headers
    assert with_key.status_code == 200 and with_key.text == "hello, 9 requests left\n"
    assert with_key.headers["RateLimit"] == '"free-1s";r=9;t=1'
    assert bad_key.status_code == 401
