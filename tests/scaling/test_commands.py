"""`surge load`, `surge restart` and `surge deploy k8s` where a user gets them wrong or nothing
answers: one line saying what and where, no traceback, exit 2 for bad input and 1 when
nothing answers (issue 10, point 7)."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.cli import fails_in_one_line, surge
from support.processes import free_port

pytestmark = pytest.mark.integration

SCALED = """
services:
  api:
    process: {command: "python3 -m http.server {port}"}
    scaling: {min: 1, max: 3, target: {inflight_per_replica: 10}}
routes:
  - {prefix: /, service: api}
"""


def test_load_of_a_url_without_a_scheme_says_how_to_write_it(tmp_path):
    line = fails_in_one_line(surge("load", "localhost:8000/work", cwd=tmp_path), 2)
    assert line == "surge load: 'localhost:8000/work' has no scheme; write " \
                   "http://localhost:8000/work"


def test_load_asks_whether_surge_up_runs_when_no_admin_api_answers(tmp_path):
    admin = f"127.0.0.1:{free_port()}"
    done = surge("load", f"http://127.0.0.1:{free_port()}/", "--duration", "1s",
                 "--admin", admin, cwd=tmp_path)
    assert fails_in_one_line(done, 1) == (
        f"surge load: no admin API answers on {admin}: is `surge up` running on {admin}?")


def test_restart_asks_whether_surge_up_runs_when_no_admin_api_answers(tmp_path):
    admin = f"127.0.0.1:{free_port()}"
    line = fails_in_one_line(surge("restart", "api", "--admin", admin, cwd=tmp_path), 1)
    assert line == f"surge restart: no admin API answers on {admin}: is `surge up` " \
                   f"running on {admin}?"


def test_restart_without_an_admin_api_in_the_config_says_what_it_wants(tmp_path):
    (tmp_path / "surge.yaml").write_text(SCALED)
    line = fails_in_one_line(surge("restart", "api", cwd=tmp_path), 2)
    assert line == "surge restart: ./surge.yaml sets no gateway.admin; pass --admin HOST:PORT"


def _deploy_into(tmp_path: Path, output: Path) -> str:
    config = tmp_path / "surge.yaml"
    config.write_text(SCALED)
    return fails_in_one_line(surge("deploy", "k8s", str(config), "-o", str(output),
                                   cwd=tmp_path), 2)


def test_deploy_into_a_file_says_it_wants_a_directory(tmp_path):
    output = tmp_path / "objects.yaml"
    output.write_text("")
    assert _deploy_into(tmp_path, output) == (
        f"surge deploy: {output} is a file; -o takes a directory (one YAML file per object "
        "goes there)")


def test_deploy_into_a_path_that_cannot_be_written_says_so(tmp_path):
    output = Path("/proc/surge-deploy")  # not writable, even as root
    assert _deploy_into(tmp_path, output) == (
        f"surge deploy: cannot write into {output}: No such file or directory")
