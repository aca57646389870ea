"""`surge check` and `surge schema`, run as the user runs them: a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from surge.config import Config

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart" / "surge.yaml"


def surge(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "surge.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def test_check_of_the_quickstart_says_ok_with_a_summary():
    done = surge("check", str(QUICKSTART))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == (f"{QUICKSTART}: ok (1 service, 1 route, 1 listener: "
                           "127.0.0.1:8000)\n")


def test_check_of_a_bad_file_prints_each_problem_and_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("services:\n  api: {upstreams: ['127.0.0.1:8101']}\n"
                   "routes:\n  - {prefix: /, service: api}\n  - {prefix: /x/, service: ap}\n"
                   "gateway: {workers: 0}\n")
    done = surge("check", str(bad))
    assert done.returncode == 2
    assert done.stdout.splitlines() == [
        f"{bad}: gateway.workers: must be at least 1, got 0",
        f"{bad}: routes[1].service: unknown service 'ap' (did you mean 'api'?)",
    ]


def test_check_of_a_yaml_error_names_the_line_once(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("gateway:\n  listen: [\n")
    done = surge("check", str(bad))
    assert done.returncode == 2
    assert done.stdout.startswith(f"{bad}:3:1: ")


def test_check_reads_the_local_surge_yaml_by_default(tmp_path):
    (tmp_path / "surge.yaml").write_text(QUICKSTART.read_text())
    done = surge("check", cwd=tmp_path)
    assert (done.returncode, done.stdout.split(":")[0]) == (0, "surge.yaml")


def test_check_without_a_file_exits_2(tmp_path):
    done = surge("check", cwd=tmp_path)
    assert done.returncode == 2 and "no FILE given" in done.stderr


def test_check_prints_warnings_and_still_passes(tmp_path):
    path = tmp_path / "surge.yaml"
    path.write_text("services:\n  api: {upstreams: ['127.0.0.1:1'], hash_on: path}\n")
    done = surge("check", str(path))
    assert done.returncode == 0
    assert done.stdout.splitlines()[0] == (
        f"{path}: warning: services.api.hash_on: has no effect unless balance is 'hash' "
        "(balance is 'p2c')")


def test_schema_prints_json_with_every_top_level_key():
    done = surge("schema")
    assert done.returncode == 0
    schema = json.loads(done.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(schema["properties"]) == set(Config.model_fields)
    assert {"gateway", "services", "routes", "rate_limits", "jobs"} <= set(schema["properties"])


def test_the_cli_registers_the_commands_without_building_the_models():
    code = "import sys, surge.config.commands; print('pydantic' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.stdout.strip() == "False", done.stderr


# -- warnings: where `surge up` would refuse or surprise (issue 10, point 6) -------------------

NO_SUCH_COMMAND = """
services:
  api:
    process: {command: "no-such-program-here --port {port}"}
routes:
  - {prefix: /, service: api}
"""


def test_check_warns_about_a_command_not_on_path_and_strict_makes_it_exit_1(tmp_path):
    path = tmp_path / "surge.yaml"
    path.write_text(NO_SUCH_COMMAND)
    done = surge("check", str(path))
    assert done.returncode == 0 and "Traceback" not in done.stdout + done.stderr
    assert done.stdout.splitlines()[0] == (
        f"{path}: warning: api: command not found: 'no-such-program-here --port {{port}}' "
        "(not on PATH here: `surge up` would refuse it)")
    assert surge("check", "--strict", str(path)).returncode == 1


def test_check_warns_about_an_empty_config(tmp_path):
    path = tmp_path / "surge.yaml"
    path.write_text("")
    done = surge("check", str(path))
    assert done.returncode == 0
    assert done.stdout.splitlines()[0] == (
        f"{path}: warning: the config defines no services, routes or jobs: `surge up` would "
        "answer every request 404")
    assert surge("check", "--strict", str(path)).returncode == 1


def test_check_warns_about_a_service_no_route_uses(tmp_path):
    path = tmp_path / "surge.yaml"
    path.write_text("services:\n  api: {upstreams: ['127.0.0.1:1']}\n"
                    "  spare: {upstreams: ['127.0.0.1:2']}\n"
                    "routes:\n  - {prefix: /, service: api}\n")
    done = surge("check", str(path))
    assert done.returncode == 0
    assert done.stdout.splitlines()[0] == (
        f"{path}: warning: services.spare: no route uses it, so it gets no requests (add a "
        "route with `service: spare`)")
    assert surge("check", "--strict", str(path)).returncode == 1
    assert surge("check", "--strict", str(QUICKSTART)).returncode == 0


# -- messages in Surge's own voice (issue 10, point 11) ----------------------------------------

def _problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "surge.yaml"
    path.write_text(text)
    done = surge("check", str(path))
    assert done.returncode == 2 and "Traceback" not in done.stdout + done.stderr
    return [line.removeprefix(f"{path}: ") for line in done.stdout.splitlines()]


def test_an_enum_typo_gets_did_you_mean(tmp_path):
    assert _problems(tmp_path, "services:\n  api: {upstreams: ['127.0.0.1:1'], "
                               "balance: round_robbin}\n") == [
        "services.api.balance: unknown value 'round_robbin' (did you mean 'round_robin'?)"]


def test_a_bare_port_in_listen_says_which_forms_are_accepted(tmp_path):
    assert _problems(tmp_path, "gateway: {listen: 8000, admin: 9000}\n") == [
        "gateway.listen: a port alone is not an address: write '127.0.0.1:8000' (this machine "
        "only) or '0.0.0.0:8000' (every interface); a list of such addresses is accepted too",
        "gateway.admin: a port alone is not an address: write '127.0.0.1:9000' (this machine "
        "only) or '0.0.0.0:9000' (every interface)"]


def test_a_misspelt_top_level_key_comes_before_the_errors_it_causes(tmp_path):
    assert _problems(tmp_path, "servces:\n  api: {upstreams: ['127.0.0.1:1']}\n"
                               "routes:\n  - {prefix: /, service: api}\n") == [
        "servces: unknown key (did you mean 'services'?)",
        "routes[0].service: unknown service 'api' (no services are defined)"]
