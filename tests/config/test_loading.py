"""Loading surge.yaml: YAML errors with their line, unknown keys, `${VAR}` interpolation,
every problem collected in one ConfigError, and finding the file."""

from __future__ import annotations

import pytest

from surge.config import Config, find_config, load, parse
from surge.errors import ConfigError

from .conftest import BASE


def test_a_yaml_syntax_error_gives_the_file_line_and_column(problems):
    text = "gateway:\n  listen: 127.0.0.1:8000\n admin: [unclosed\n"
    [problem] = problems(text, source="stack.yaml")
    assert problem.startswith("stack.yaml:3:2: ")


def test_an_unclosed_flow_list_is_located(problems):
    [problem] = problems("routes: [{prefix: /, service: api}\n")
    assert problem.startswith("surge.yaml:2:1: ") and "expected ',' or ']'" in problem


def test_a_repeated_key_is_an_error_with_its_line(problems):
    text = "services:\n  api: {upstreams: ['127.0.0.1:1']}\n  api: {upstreams: ['127.0.0.1:2']}\n"
    assert problems(text) == ["surge.yaml:3:3: duplicate key 'api'"]


def test_a_top_level_list_is_refused(problems):
    assert problems("- a\n- b\n") == [
        "surge.yaml: expected a mapping of keys at the top level, got list"]


def test_only_true_and_false_are_booleans():
    config = parse(BASE.replace("routes:", "gateway: {access_log: off}\nroutes:")
                   .replace("service: api}", "service: api, headers: {X-Canary: yes}}"))
    assert config.gateway.access_log == "off"
    assert config.routes[0].headers == {"X-Canary": "yes"}


def test_anchors_under_x_keys_and_merge_keys_reuse_settings():
    config = parse("""
x-app: &app {upstreams: ['127.0.0.1:8101'], balance: random}
services:
  a: *app
  b:
    <<: *app
    balance: round_robin
""")
    assert {name: s.balance for name, s in config.services.items()} == {
        "a": "random", "b": "round_robin"}


def test_numbers_are_accepted_where_strings_are_expected():
    config = parse(BASE.replace("service: api}", "service: api, headers: {X-Canary: 1}}"))
    assert config.routes[0].headers == {"X-Canary": "1"}


@pytest.mark.parametrize(("text", "problem"), [
    ("gateway: {lisen: '127.0.0.1:1'}", "gateway.lisen: unknown key (did you mean 'listen'?)"),
    ("services:\n  api:\n    upstreams: ['127.0.0.1:1']\n    health: {intervl: 1s}",
     "services.api.health.intervl: unknown key (did you mean 'interval'?)"),
    ("routes: [{prefix: /, service: api, strip: true}]",
     "routes[0].strip: unknown key (did you mean 'strip_prefix'?)"),
    ("services:\n  api:\n    upstreams: [{address: '127.0.0.1:1', wieght: 2}]",
     "services.api.upstreams[0].wieght: unknown key (did you mean 'weight'?)"),
    ("routes: [{prefix: /, service: api, rate_limit: {plna: free}}]",
     "routes[0].rate_limit.plna: unknown key (did you mean 'plan'?)"),
    ("telemetry: {}",
     f"telemetry: unknown key (known keys: {', '.join(Config.model_fields)})"),
])
def test_an_unknown_key_is_an_error_at_its_location(problems, text, problem):
    assert problem in problems(text)


def test_every_problem_is_reported_at_once(problems):
    text = """
gateway: {listen: nowhere, workers: 0}
services:
  api: {upstreams: ['127.0.0.1:1'], health: {interval: never}}
routes:
  - {prefix: /, service: apii}
rate_limits: {default_plan: gold}
"""
    assert problems(text) == [
        "gateway.listen[0]: expected host:port, e.g. '127.0.0.1:8000', got 'nowhere'",
        "gateway.workers: must be at least 1, got 0",
        "services.api.health.interval: expected a duration like '250ms', '2s', '5m' or '1h', "
        "got 'never'",
        "rate_limits.default_plan: unknown plan 'gold' (defined: anonymous)",
        "routes[0].service: unknown service 'apii' (did you mean 'api'?)",
    ]


# -- ${VAR} interpolation -------------------------------------------------------------------

ADMIN = BASE + "gateway: {admin: '${ADMIN}'}\n"


def test_a_set_variable_is_substituted():
    config = parse(ADMIN, env={"ADMIN": "127.0.0.1:9001"})
    assert config.gateway.admin == "127.0.0.1:9001"


def test_a_variable_inside_a_longer_string_is_substituted():
    config = parse(BASE.replace("127.0.0.1:8101", "'${HOST}:${PORT}'"),
                   env={"HOST": "10.0.0.5", "PORT": "8101"})
    assert config.services["api"].upstreams[0].address == "10.0.0.5:8101"


def test_an_unset_variable_takes_its_default():
    config = parse(BASE + "gateway: {admin: '${ADMIN:-127.0.0.1:9002}'}\n", env={})
    assert config.gateway.admin == "127.0.0.1:9002"


def test_an_empty_variable_takes_its_default_like_the_shell():
    config = parse(BASE + "gateway: {workers: '${WORKERS:-3}'}\n", env={"WORKERS": ""})
    assert config.gateway.workers == 3


def test_a_substituted_number_is_converted_by_the_model():
    config = parse(BASE + "gateway: {workers: '${WORKERS}'}\n", env={"WORKERS": "4"})
    assert config.gateway.workers == 4


def test_an_unset_variable_without_default_is_one_located_problem(problems):
    assert problems(ADMIN, env={}) == ["gateway.admin: environment variable 'ADMIN' is not set"]


def test_an_unset_variable_in_a_list_names_the_item(problems):
    text = BASE.replace("[127.0.0.1:8101]", "['127.0.0.1:8101', '${SECOND}']")
    assert problems(text, env={}) == [
        "services.api.upstreams[1]: environment variable 'SECOND' is not set"]


def test_a_doubled_dollar_escapes_a_literal_reference():
    config = parse(BASE.replace("service: api}", "service: api, headers: {X-T: '$${HOME}'}}"),
                   env={"HOME": "/root"})
    assert config.routes[0].headers == {"X-T": "${HOME}"}


def test_a_malformed_reference_is_a_problem(problems):
    text = BASE.replace("service: api}", "service: api, headers: {X-T: '${1x}'}}")
    assert problems(text, env={}) == [
        "routes[0].headers.X-T: malformed '${...}': write ${NAME}, ${NAME:-default} or $${ for "
        "a literal '${'"]


def test_the_process_environment_is_the_default(monkeypatch):
    monkeypatch.setenv("SURGE_TEST_ADMIN", "127.0.0.1:9003")
    config = parse(BASE + "gateway: {admin: '${SURGE_TEST_ADMIN}'}\n")
    assert config.gateway.admin == "127.0.0.1:9003"


def test_a_value_from_the_environment_is_never_read_as_yaml():
    config = parse(BASE.replace("service: api}", "service: api, headers: {X-T: '${V}'}}"),
                   env={"V": "{a: [1, 2]}"})
    assert config.routes[0].headers == {"X-T": "{a: [1, 2]}"}


# -- files ----------------------------------------------------------------------------------


def test_load_reads_a_file_and_names_it_in_syntax_errors(tmp_path):
    path = tmp_path / "surge.yaml"
    path.write_text(BASE)
    assert list(load(path).services) == ["api"]
    path.write_text("gateway: [\n")
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert caught.value.problems[0].startswith(f"{path}:2:1: ")


def test_load_of_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path / "absent.yaml")
    assert caught.value.problems == [f"{tmp_path / 'absent.yaml'}: cannot read: "
                                     "No such file or directory"]


def test_find_config_prefers_the_explicit_path_then_the_local_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert find_config(None) is None
    (tmp_path / "surge.yaml").write_text(BASE)
    assert str(find_config(None)) == "surge.yaml"
    assert str(find_config("other.yaml")) == "other.yaml"


@pytest.mark.parametrize(("text", "problem"), [
    ("services:\n", "services: is empty; write {} for none, or remove the key"),
    ("routes:\n", "routes: is empty; write [] for none, or remove the key"),
    ("routes: {prefix: /}", "routes: expected a list, got dict"),
    ("gateway: {listen: []}",
     "gateway.listen: needs at least 1 item, got 0"),
])
def test_a_section_of_the_wrong_shape_says_what_was_expected(problems, text, problem):
    assert problems(text) == [problem]


def test_a_key_is_reported_once_by_the_first_pass_that_finds_it_wrong(problems):
    assert problems("state: '${STATE}'", env={}) == [
        "state: environment variable 'STATE' is not set"]
    assert problems(BASE.replace("service: api}", "service: api, rate_limit: 5}")) == [
        "routes[0].rate_limit: expected true, false, {plan: NAME} or {cost: N}"]
