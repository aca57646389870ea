"""The runnable example in examples/ratelimit_asgi does what its README says: the README's
own commands are run as written (`surge keys create`, `uvicorn`, `curl`; only the port is a
free one and `sk_...` the key just printed), in a copy of the example, by real processes."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from support.processes import ManagedProcess, free_port, wait_for_port
from surge.ratelimit.registry import REFRESH_INTERVAL

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).parents[2] / "examples" / "ratelimit_asgi"
BIN = Path(sys.executable).parent  # the virtualenv's `surge`, `uvicorn`
README_PORT = "8080"
# The documented bound (one poll interval plus one read of the store), with room for a
# loaded test machine; what is checked is that the delay is bounded, not instant.
PROPAGATION_BOUND = REFRESH_INTERVAL + 1.0


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: str


def readme_commands() -> list[list[str]]:
    """The README's shell block, one argv per line, comments dropped."""
    text = (EXAMPLE / "README.md").read_text()
    found = re.search(r"^```sh\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert found, "the example's README shows its commands in a ```sh block"
    lines = (re.sub(r"\s+#.*$", "", line).strip() for line in found.group(1).splitlines())
    return [shlex.split(line) for line in lines if line]


def curl(argv: list[str], port: int, key: str) -> Answer:
    argv = [a.replace("sk_...", key).replace(f":{README_PORT}", f":{port}") for a in argv]
    done = subprocess.run([*argv, "--silent", "--show-error"], capture_output=True, text=True,
                          timeout=30, check=True)
    head, _, body = done.stdout.replace("\r\n", "\n").partition("\n\n")
    status_line, *fields = head.splitlines()
    headers = {}
    for field in fields:
        name, _, value = field.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split()[1]), headers, body)


def surge(*args: str, cwd: Path) -> str:
    done = subprocess.run([str(BIN / "surge"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=30, check=True)
    return done.stdout.strip()


@pytest.fixture
def example(tmp_path):
    """A copy of the example (its .surge stays out of the repository) and a free port."""
    app_dir = tmp_path / "example"
    shutil.copytree(EXAMPLE, app_dir, ignore=shutil.ignore_patterns(".surge", "__pycache__"))
    return app_dir, free_port()


def start_uvicorn(argv: list[str], app_dir: Path, port: int) -> ManagedProcess:
    assert argv[0] == "uvicorn" and README_PORT in argv
    argv = [str(BIN / "uvicorn"), *[str(port) if a == README_PORT else a for a in argv[1:]],
            "--log-level", "warning"]
    server = ManagedProcess(f"uvicorn-{port}", argv, app_dir.parent, cwd=app_dir)
    server.spawn()
    wait_for_port("127.0.0.1", port, 15.0)
    return server


def test_the_readme_commands_limit_anonymous_clients_and_serve_a_key_on_both_endpoints(example):
    app_dir, port = example
    key, server, answers = "", None, []
    try:
        for argv in readme_commands():
            if argv[0] == "cd":
                assert argv[1] == "examples/ratelimit_asgi"
            elif argv[0] == "surge":
                key = surge(*argv[1:], cwd=app_dir)
            elif argv[0] == "uvicorn":
                server = start_uvicorn(argv, app_dir, port)
            else:
                assert argv[0] == "curl" and server is not None
                answers.append(curl(argv, port, key))
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            bad_key = client.post("/report", headers={"X-API-Key": "sk_not_a_real_key_at_all"})
            anonymous = [client.get("/hello") for _ in range(4)]
    finally:
        if server is not None:
            server.terminate()
    hello, hello_key, report_key, report = answers
    assert key.startswith("sk_")
    assert hello.status == 200 and hello.headers["ratelimit"] == '"anonymous";r=4;t=12'
    assert hello_key.status == 200 and hello_key.body == "hello, 9 requests left\n"
    assert hello_key.headers["ratelimit"] == '"free-1s";r=9;t=1'
    # the decorated endpoint knows alice's key (the middleware's registry) and charges 5
    assert report_key.status == 200, report_key.body
    assert report_key.headers["ratelimit"] == '"free-1s";r=5;t=1'
    assert report.status == 200 and report.headers["ratelimit"] == '"anonymous";r=0;t=60'
    assert bad_key.status_code == 401
    assert bad_key.headers["content-type"] == "application/problem+json"
    # the sixth anonymous request of the minute: /hello, /report, then these four
    assert [a.status_code for a in anonymous] == [200, 200, 200, 429]
    assert "retry-after" in anonymous[-1].headers


def wait_for_status(client: httpx.Client, key: str, status: int) -> float:
    """Seconds until POST /report with `key` answers `status` (fails past the bound)."""
    start = time.monotonic()
    while True:
        answer = client.post("/report", headers={"Authorization": f"Bearer {key}"})
        elapsed = time.monotonic() - start
        if answer.status_code == status:
            return elapsed
        assert elapsed < PROPAGATION_BOUND, f"still {answer.status_code} after {elapsed:.2f}s"
        time.sleep(0.02)


@pytest.mark.parametrize("state", ["local", "redis"])
def test_a_key_created_or_revoked_by_another_process_applies_within_the_refresh_interval(
    example, state, request,
):
    """The app and `surge keys` share only the key store (the SQLite file of `state: local`,
    or Redis): the app's registry polls it."""
    app_dir, port = example
    if state == "redis":
        config = app_dir / "surge.yaml"
        url = request.getfixturevalue("redis_url")
        config.write_text(config.read_text().replace("state: local", f"state: {url}"))
        assert url in config.read_text()
    server = start_uvicorn(["uvicorn", "app:app", "--port", README_PORT], app_dir, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            key = surge("keys", "create", "--name", "bob", "--plan", "premium", cwd=app_dir)
            created_after = wait_for_status(client, key, 200)
            surge("keys", "revoke", key, cwd=app_dir)
            revoked_after = wait_for_status(client, key, 401)
    finally:
        server.terminate()
    assert created_after < PROPAGATION_BOUND and revoked_after < PROPAGATION_BOUND
