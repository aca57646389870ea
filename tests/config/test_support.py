"""The not-yet-supported pass: keys the runtime cannot honour are refused at their location,
in a pass separate from validation, and the CONFIG.md example uses exactly those."""

from __future__ import annotations

from pathlib import Path

import pytest

from surge.config import check_supported, load, parse
from surge.config.support import NOT_YET_SUPPORTED

from .conftest import BASE

CONFIG_MD_EXAMPLE = Path(__file__).parent / "fixtures" / "config_md.yaml"


def test_a_process_is_refused_with_the_advice_to_use_upstreams(problems):
    text = BASE.replace("upstreams:", "process: {command: 'app --port {port}'}\n    upstreams:")
    assert problems(text) == [
        "services.api.process: not supported yet (the supervisor is not built); remove the key "
        "or use 'upstreams'"]


def test_a_route_rate_limit_is_refused_unless_false(problems):
    assert problems(BASE.replace("service: api}", "service: api, rate_limit: false}")) == []
    assert problems(BASE.replace("service: api}", "service: api, rate_limit: {cost: 2}}")) == [
        "routes[0].rate_limit: not supported yet (the rate limit policy is not wired in); "
        "remove the key or set it to false"]


@pytest.mark.parametrize(("state", "refused"), [
    ("local", False), ("'memory://'", True), ("'sqlite:///tmp/s.db'", True),
    ("'redis://127.0.0.1:6379/0'", True),
])
def test_state_other_than_local_is_refused(problems, state, refused):
    found = problems(BASE + f"state: {state}\n")
    assert found == (["state: not supported yet (only in-process state is built); remove the "
                      "key or use 'local'"] if refused else [])


def test_several_gateway_workers_are_supported(problems):
    assert problems(BASE + "gateway: {workers: 4}\n") == []


def test_libraries_can_parse_a_config_with_keys_not_supported_yet():
    config = parse(BASE + "jobs: {broker: 'redis://127.0.0.1:6379/0'}\n", check_support=False)
    assert config.jobs.broker == "redis://127.0.0.1:6379/0"
    assert check_supported(config) == [
        "jobs: not supported yet (the job workers are not wired in); remove the section"]


def test_the_pass_reads_a_config_or_the_raw_mapping_alike():
    raw = {"services": {"a": {"process": {"command": "x {port}"}}}, "routes": [
        {"service": "a", "rate_limit": True}]}
    config = parse("services: {a: {process: {command: 'x {port}'}}}\n"
                   "routes: [{prefix: /, service: a, rate_limit: true}]", check_support=False)
    assert check_supported(raw) == check_supported(config) == [
        "services.a.process: not supported yet (the supervisor is not built); remove the key "
        "or use 'upstreams'",
        "routes[0].rate_limit: not supported yet (the rate limit policy is not wired in); "
        "remove the key or set it to false",
    ]


def test_every_entry_names_a_key_path_of_the_config():
    roots = {"services", "routes", "jobs", "state", "gateway", "rate_limits", "data_dir"}
    assert {entry.path.split(".")[0].split("[")[0] for entry in NOT_YET_SUPPORTED} <= roots


def test_the_config_md_example_is_valid_and_uses_only_keys_not_supported_yet():
    config = load(CONFIG_MD_EXAMPLE, check_support=False)
    assert set(config.services) == {"api"}
    assert config.services["api"].upstreams[1].weight == 2
    assert config.services["api"].scaling.scale_up.max_step == "100%"
    assert config.rate_limits.plans["premium"][1].limit == 10000
    assert config.jobs.queues["default"].max_backoff == 600.0
    assert config.warnings() == []
    assert check_supported(config) == [
        "services.api.process: not supported yet (the supervisor is not built); remove the key "
        "or use 'upstreams'",
        "services.api.scaling: not supported yet (the autoscaler is not wired in); remove the "
        "key and set a fixed number of upstreams",
        "routes[0].rate_limit: not supported yet (the rate limit policy is not wired in); "
        "remove the key or set it to false",
        "jobs: not supported yet (the job workers are not wired in); remove the section",
    ]
