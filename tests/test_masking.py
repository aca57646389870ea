"""No password of a URL is ever shown (issue 10, point 12): `mask_credentials` itself, then
every output of the real CLI and admin API, with a store and broker URL that carry a known
password, once reachable and once not."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from support.cli import SURGE, surge
from support.processes import free_port, wait_for_port
from surge.masking import mask_credentials

PASSWORD = "TopSecret42-never-shown"


@pytest.mark.parametrize(("text", "shown"), [
    ("redis://:s3cret@h:6379/0", "redis://:***@h:6379/0"),
    ("redis://default:s3cret@h/5", "redis://default:***@h/5"),
    ("postgresql://app:p%40ss@db:5432/x", "postgresql://app:***@db:5432/x"),
    ("amqp://guest:guest@rabbit//", "amqp://guest:***@rabbit//"),
    ("broker 'redis://u:a@h/0' and store rediss://:b@h2/1 down",
     "broker 'redis://u:***@h/0' and store rediss://:***@h2/1 down"),
    ("redis://h:6379/0", "redis://h:6379/0"),
    ("http://127.0.0.1:8000/users/a@b", "http://127.0.0.1:8000/users/a@b"),
    ("no URL here: user:pass@host", "no URL here: user:pass@host"),
])
def test_mask_credentials_hides_each_password_and_nothing_else(text, shown):
    assert mask_credentials(text) == shown


@pytest.fixture(params=["reachable", "unreachable"])
def store_url(request) -> str:
    """A Redis URL with PASSWORD in it (the default user has no password: any is accepted)."""
    if request.param == "unreachable":
        return f"redis://default:{PASSWORD}@127.0.0.1:{free_port()}/0"
    url = request.getfixturevalue("redis_url")
    return url.replace("redis://", f"redis://default:{PASSWORD}@", 1)


def write_config(path: Path, state: str, listen: int, admin: int) -> None:
    path.write_text(f"""
state: "{state}"
gateway: {{listen: "127.0.0.1:{listen}", admin: "127.0.0.1:{admin}"}}
services:
  api: {{upstreams: ["127.0.0.1:{free_port()}"]}}
routes:
  - {{prefix: /, service: api, rate_limit: true}}
jobs:
  broker: "{state}"
""")


@pytest.mark.integration
def test_no_output_of_the_cli_or_admin_api_shows_a_password(tmp_path, store_url):
    config = tmp_path / "surge.yaml"
    listen, admin = free_port(), free_port()
    write_config(config, store_url, listen, admin)
    outputs = []
    for args in (["check"], ["check", "--strict"], ["keys", "list"],
                 ["keys", "create", "--name", "a", "--plan", "anonymous"],
                 ["jobs", "stats", "--broker", store_url],
                 ["jobs", "dead", "--broker", store_url]):
        done = surge(*args, cwd=tmp_path)
        outputs += [done.stdout, done.stderr]
    outputs.append(run_up_and_ask_its_admin_api(tmp_path, config, listen, admin))
    write_config(config, store_url.replace("redis://", "redis+x://"), listen, admin)
    done = surge("check", cwd=tmp_path)  # an invalid URL, quoted in the problem
    outputs += [done.stdout, done.stderr]
    everything = "\n".join(outputs)
    assert "Traceback" not in everything
    assert "default:***@" in everything  # the URLs were shown, masked
    assert PASSWORD not in everything


def run_up_and_ask_its_admin_api(tmp_path: Path, config: Path, listen: int, admin: int) -> str:
    """Everything `surge up` printed, and every admin answer, with a refused reload (a URL
    of no known kind) among them."""
    out, err = tmp_path / "up.out", tmp_path / "up.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        up = subprocess.Popen([str(SURGE), "up", str(config)], cwd=tmp_path, stdout=stdout,
                              stderr=stderr)
    answers = []
    try:
        wait_for_port("127.0.0.1", admin, 20)
        with httpx.Client(base_url=f"http://127.0.0.1:{admin}", timeout=10) as client:
            for path in ("/api/services", "/api/jobs/queues", "/api/keys", "/api/scaling",
                         "/api/ratelimits/203.0.113.9", "/metrics"):
                answers.append(client.get(path).text)
            httpx.get(f"http://127.0.0.1:{listen}/", timeout=10)  # the rate limit store
            config.write_text(config.read_text().replace("redis://", "redis+x://"))
            answers.append(client.post("/api/reload").text)
        time.sleep(1)  # the background refreshes log their failures
    finally:
        up.terminate()
        up.wait(30)
    return "\n".join([*answers, out.read_text(), err.read_text()])
