"""The not-yet-supported pass: keys the runtime cannot honour are refused at their location,
in a pass separate from validation. Every key of CONFIG.md runs today, so the list is empty;
the mechanism is specified with entries of the tests' own."""

from __future__ import annotations

from pathlib import Path

import pytest

from surge.config import check_supported, load, parse, support
from surge.config.support import NOT_YET_SUPPORTED, Unsupported

from .conftest import BASE

CONFIG_MD_EXAMPLE = Path(__file__).parent / "fixtures" / "config_md.yaml"


@pytest.fixture
def pending(monkeypatch):
    """Pretend the supervisor and the rate limit policy were not built yet."""
    monkeypatch.setattr(support, "NOT_YET_SUPPORTED", (
        Unsupported("services.*.process", "the supervisor is not built",
                    "remove the key or use 'upstreams'"),
        Unsupported("routes[*].rate_limit", "the rate limit policy is not wired in",
                    "remove the key or set it to false"),
    ))


def test_a_key_not_supported_yet_is_refused_at_its_location_with_advice(pending, problems):
    text = BASE.replace("upstreams:", "process: {command: 'app --port {port}'}\n    upstreams:")
    assert problems(text) == [
        "services.api.process: not supported yet (the supervisor is not built); remove the key "
        "or use 'upstreams'"]


def test_a_false_value_is_not_in_use(pending, problems):
    assert problems(BASE.replace("service: api}", "service: api, rate_limit: false}")) == []
    assert problems(BASE.replace("service: api}", "service: api, rate_limit: {cost: 2}}")) == [
        "routes[0].rate_limit: not supported yet (the rate limit policy is not wired in); "
        "remove the key or set it to false"]


def test_libraries_can_parse_a_config_with_keys_not_supported_yet(pending):
    text = BASE.replace("upstreams:", "process: {command: 'app --port {port}'}\n    upstreams:")
    config = parse(text, check_support=False)
    assert config.services["api"].process.command == "app --port {port}"
    assert len(check_supported(config)) == 1


def test_the_pass_reads_a_config_or_the_raw_mapping_alike(pending):
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


@pytest.mark.parametrize("state", ["local", "'memory://'", "'sqlite:///tmp/s.db'",
                                   "'redis://127.0.0.1:6379/0'"])
def test_every_state_url_is_supported(problems, state):
    assert problems(BASE + f"state: {state}\n") == []


def test_several_gateway_workers_are_supported(problems):
    assert problems(BASE + "gateway: {workers: 4}\n") == []


def test_every_entry_names_a_key_path_of_the_config():
    roots = {"services", "routes", "jobs", "state", "gateway", "rate_limits", "data_dir"}
    assert {entry.path.split(".")[0].split("[")[0] for entry in NOT_YET_SUPPORTED} <= roots


def test_the_config_md_example_is_valid_and_fully_supported():
    config = load(CONFIG_MD_EXAMPLE, check_support=False)
    assert set(config.services) == {"api"}
    assert config.services["api"].upstreams[1].weight == 2
    assert config.services["api"].scaling.scale_up.max_step == "100%"
    assert config.rate_limits.plans["premium"][1].limit == 10000
    assert config.jobs.queues["default"].max_backoff == 600.0
    assert config.warnings() == []
    assert check_supported(config) == []
