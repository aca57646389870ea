"""The surge.yaml models: defaults, normalised forms, and each check within a section or
across sections, reported at the exact key that holds the problem."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from surge.config import Config, parse
from surge.config.models_services import ScaleDown, ScaleUp, UpstreamSpec
from surge.config.units import Rate
from surge.errors import ConfigError

from .conftest import BASE


def test_an_empty_file_is_a_gateway_with_the_documented_defaults():
    config = parse("")
    assert config.gateway.listen == ["127.0.0.1:8000"]
    assert config.gateway.admin is None
    assert config.gateway.workers == 1
    assert config.gateway.access_log == "stdout"
    assert config.gateway.timeouts.model_dump() == {
        "connect": 2.0, "client_header": 10.0, "upstream": 30.0, "client_body": 30.0,
        "upstream_body": 30.0, "idle": 75.0,
    }
    assert (config.gateway.max_header_bytes, config.gateway.max_body_bytes) == (16384, 10485760)
    assert config.gateway.drain == 30.0
    assert (config.state, config.data_dir, config.services, config.routes) == (
        "local", ".surge", {}, [])
    assert config.rate_limits.plans == {"anonymous": [Rate(60, 60.0)]}
    assert config.rate_limits.default_plan == "anonymous"
    assert config.jobs is None


def test_a_service_gets_the_documented_defaults():
    service = parse(BASE).services["api"]
    assert service.balance == "p2c" and service.hash_on == "ip"
    assert service.sticky_cookie is None and service.health is None
    assert service.outlier.model_dump() == {
        "consecutive_failures": 5, "ejection": 30.0, "max_ejected_percent": 50}
    assert service.retry.model_dump() == {
        "attempts": 2, "budget_percent": 20, "min_per_second": 10, "backoff": 0.025}
    assert (service.max_connections, service.max_pending, service.slow_start) == (1024, 1024, 0.0)


def test_health_defaults_when_the_section_is_empty():
    config = parse(BASE.replace("upstreams:", "health: {}\n    upstreams:"))
    health = config.services["api"].health
    assert (health.path, health.interval, health.timeout) == ("/healthz", 2.0, 1.0)
    assert (health.rise, health.fall, health.expect) == (2, 3, (200, 399))


def test_a_single_listen_address_becomes_a_one_item_list():
    config = parse("gateway: {listen: '0.0.0.0:80'}")
    assert config.gateway.listen == ["0.0.0.0:80"]


def test_a_plain_upstream_string_means_weight_one():
    config = parse(BASE.replace("[127.0.0.1:8101]",
                                "[127.0.0.1:8101, {address: '[::1]:8102', weight: 3}]"))
    assert config.services["api"].upstreams == [
        UpstreamSpec(address="127.0.0.1:8101", weight=1),
        UpstreamSpec(address="[::1]:8102", weight=3),
    ]


def test_route_methods_are_upper_cased_and_host_lower_cased():
    route = "{prefix: /, service: api, methods: [get, Post], host: API.Example.com}"
    config = parse(BASE.replace("{prefix: /, service: api}", route))
    assert config.routes[0].methods == ["GET", "POST"]
    assert config.routes[0].host == "api.example.com"


@pytest.mark.parametrize(("written", "value"), [
    ("true", True), ("false", False), ("{plan: anonymous}", "anonymous"), ("{cost: 3}", None),
])
def test_a_route_rate_limit_is_a_flag_or_a_plan_and_cost(written, value):
    config = parse(BASE.replace("service: api}", f"service: api, rate_limit: {written}}}"),
                   check_support=False)
    rate_limit = config.routes[0].rate_limit
    if isinstance(value, bool):
        assert rate_limit is value
    else:
        assert rate_limit.plan == value and rate_limit.cost == (3 if value is None else 1)


def test_max_step_keeps_a_count_or_a_percent_and_each_direction_has_its_own_defaults():
    assert ScaleUp().model_dump() == {"stabilization": 0.0, "max_step": [4, "100%"]}
    assert ScaleUp.model_validate({"max_step": ["2", "50%"]}).max_step == [2, "50%"]
    assert ScaleDown().model_dump() == {"stabilization": 300.0, "max_step": 1}
    assert ScaleDown.model_validate({"max_step": "50%"}).stabilization == 300.0
    assert ScaleUp.model_validate({"max_step": "4"}).max_step == 4


def test_a_model_is_frozen():
    config = parse(BASE)
    with pytest.raises(ValidationError):
        config.gateway.workers = 4


def test_a_config_round_trips_through_its_dump():
    fixture = Path(__file__).parent / "fixtures" / "config_md.yaml"
    config = parse(fixture.read_text(), check_support=False)
    again = Config.model_validate(config.model_dump(mode="json"), context={})
    assert again == config


# -- problems at their location -------------------------------------------------------------

SERVICE_PROBLEMS = [
    ("upstreams: [nohost]",
     "services.api.upstreams[0].address: expected host:port, e.g. '127.0.0.1:8000', got 'nohost'"),
    ("upstreams: ['127.0.0.1:0']",
     "services.api.upstreams[0].address: port must be 1..65535, got 0 in '127.0.0.1:0'"),
    ("upstreams: ['127.0.0.1:1', '127.0.0.1:1']",
     "services.api.upstreams: upstream '127.0.0.1:1' is listed twice"),
    ("upstreams: []",
     "services.api: a service needs 'upstreams', 'process' or both"),
    ("{upstreams: ['127.0.0.1:1'], balance: fastest}",
     "services.api.balance: unknown value 'fastest' (one of: p2c, round_robin, weighted, "
     "least_conn, hash, random)"),
    ("{upstreams: ['127.0.0.1:1'], balance: round_robbin}",
     "services.api.balance: unknown value 'round_robbin' (did you mean 'round_robin'?)"),
    ("{upstreams: ['127.0.0.1:1'], hash_on: 'query:x'}",
     "services.api.hash_on: expected one of ip | path | header:NAME | cookie:NAME, "
     "got 'query:x'"),
    ("{upstreams: ['127.0.0.1:1'], health: {interval: 1s, timeout: 2s}}",
     "services.api.health.timeout: timeout (2s) is longer than interval (1s)"),
    ("{upstreams: ['127.0.0.1:1'], health: {interval: soon}}",
     "services.api.health.interval: expected a duration like '250ms', '2s', '5m' or '1h', "
     "got 'soon'"),
    ("{upstreams: ['127.0.0.1:1'], health: {expect: 299-200}}",
     "services.api.health.expect: expected statuses within 100..599, low to high, got '299-200'"),
    ("{upstreams: ['127.0.0.1:1'], health: {path: healthz}}",
     "services.api.health.path: must start with '/', got 'healthz'"),
    ("{process: {command: 'python app.py'}}",
     "services.api.process.command: the command must contain '{port}', which surge fills in "
     "per replica"),
    ("{upstreams: ['127.0.0.1:1'], scaling: {max: 2, target: {cpu_percent: 50}}}",
     "services.api.scaling: scaling applies to 'process' replicas; add 'process' or remove "
     "'scaling'"),
    ("{process: {command: 'x {port}'}, scaling: {min: 5, max: 2, target: {cpu_percent: 50}}}",
     "services.api.scaling.max: max (2) is below min (5)"),
    ("{process: {command: 'x {port}'}, scaling: {max: 2, target: {}}}",
     "services.api.scaling.target: set at least one of cpu_percent, inflight_per_replica, "
     "p95_latency, queue_depth_per_replica"),
    ("{process: {command: 'x {port}'}, scaling: {max: 2, target: {cpu_percent: 9},"
     " schedule: [{cron: 'every day', min: 1}]}}",
     "services.api.scaling.schedule[0].cron: invalid cron expression 'every day'"),
    ("{process: {command: 'x {port}'}, scaling: {max: 2, target: {cpu_percent: 9},"
     " schedule: [{cron: '0 8 * * *', min: 3}]}}",
     "services.api.scaling.schedule: schedule[0].min (3) is above max (2)"),
    ("{process: {command: 'x {port}'}, scaling: {min: 0, max: 2, target: {cpu_percent: 9}}}",
     "services.api.scaling.min: 0 needs a queue_depth_per_replica target to wake on"),
    ("{process: {command: 'x {port}'}, scaling: {max: 2, target: {cpu_percent: 9},"
     " scale_up: {max_step: 0}}}",
     "services.api.scaling.scale_up.max_step: expected a replica count like 1 or a percent like "
     "'100%', got 0"),
    ("{upstreams: ['127.0.0.1:1'], sticky_cookie: 'a b'}",
     "services.api.sticky_cookie: 'a b' is not a valid header or cookie name"),
]


@pytest.mark.parametrize(("service", "problem"), SERVICE_PROBLEMS)
def test_a_bad_service_is_reported_at_its_key(problems, service, problem):
    text = f"services:\n  api: {service}\n" if service.startswith("{") else \
        f"services:\n  api:\n    {service}\n"
    assert problem in problems(text, check_support=False)


def test_a_route_to_an_unknown_service_suggests_the_nearest_name(problems):
    text = BASE + "  - {prefix: /a/, service: ap}\n"
    assert problems(text) == ["routes[1].service: unknown service 'ap' (did you mean 'api'?)"]


def test_a_route_to_an_unknown_service_lists_the_names_when_none_is_close(problems):
    text = BASE + "  - {prefix: /a/, service: zzz}\n"
    assert problems(text) == ["routes[1].service: unknown service 'zzz' (defined: api)"]


def test_a_route_without_services_says_none_are_defined(problems):
    assert problems("routes: [{prefix: /, service: api}]") == [
        "routes[0].service: unknown service 'api' (no services are defined)"]


def test_one_bad_service_does_not_make_routes_to_it_unknown(problems):
    text = BASE.replace("[127.0.0.1:8101]", "[bad]")
    assert problems(text) == [
        "services.api.upstreams[0].address: expected host:port, e.g. '127.0.0.1:8000', "
        "got 'bad'"]


def test_an_unknown_default_plan_is_reported(problems):
    text = BASE + "rate_limits:\n  plans: {free: [10/second]}\n  default_plan: fre\n"
    assert problems(text) == [
        "rate_limits.default_plan: unknown plan 'fre' (did you mean 'free'?)"]


def test_an_unknown_route_plan_is_reported_under_the_route(problems):
    text = BASE.replace("service: api}", "service: api, rate_limit: {plan: premium}}")
    assert problems(text, check_support=False) == [
        "routes[0].rate_limit.plan: unknown plan 'premium' (defined: anonymous)"]


def test_a_route_rate_limit_of_another_shape_is_refused(problems):
    text = BASE.replace("service: api}", "service: api, rate_limit: 5}")
    assert problems(text, check_support=False) == [
        "routes[0].rate_limit: expected true, false, {plan: NAME} or {cost: N}"]


def test_a_route_cost_below_one_is_refused(problems):
    text = BASE.replace("service: api}", "service: api, rate_limit: {cost: 0}}")
    assert problems(text, check_support=False) == [
        "routes[0].rate_limit.cost: must be at least 1, got 0"]


@pytest.mark.parametrize(("route", "problem"), [
    ("{prefix: api, service: api}", "routes[1].prefix: must start with '/', got 'api'"),
    ("{prefix: /, service: api, methods: [FETCH]}",
     "routes[1].methods[0]: unknown HTTP method 'FETCH'; use one of GET, HEAD, POST, PUT, "
     "DELETE, CONNECT, OPTIONS, TRACE, PATCH"),
    ("{prefix: /, service: api, methods: []}",
     "routes[1].methods: needs at least 1 item, got 0"),
    ("{prefix: /}", "routes[1].service: required key is missing"),
])
def test_a_bad_route_is_reported_at_its_key(problems, route, problem):
    assert problems(BASE + f"  - {route}\n") == [problem]


def test_a_route_may_be_named_and_each_name_names_one_route(problems):
    named = BASE.replace("{prefix:", "{name: api, prefix:")
    assert problems(named) == []
    twice = named + "  - {name: api, prefix: /b/, service: api}\n"
    assert problems(twice) == [
        "routes: routes[1] takes the name 'api' of routes[0]; route names are unique"]
    assert problems(BASE + "  - {name: 'a b', prefix: /b/, service: api}\n")[0].startswith(
        "routes[1].name: invalid name 'a b'")


def test_duplicate_listen_addresses_are_reported(problems):
    text = "gateway: {listen: ['127.0.0.1:8000', '0.0.0.0:8000']}"
    assert problems(text) == [
        "gateway.listen: '0.0.0.0:8000' clashes with listen[0] ('127.0.0.1:8000')"]


def test_an_admin_address_equal_to_a_listener_is_reported(problems):
    text = "gateway: {listen: ['127.0.0.1:8000', '127.0.0.1:8001'], admin: '127.0.0.1:8001'}"
    assert problems(text) == [
        "gateway.admin: '127.0.0.1:8001' clashes with gateway.listen[1] ('127.0.0.1:8001'); "
        "the admin API needs its own port"]


@pytest.mark.parametrize(("gateway", "problem"), [
    ("{listen: 'localhost'}",
     "gateway.listen[0]: expected host:port, e.g. '127.0.0.1:8000', got 'localhost'"),
    ("{listen: '127.0.0.1:70000'}",
     "gateway.listen[0]: port must be 1..65535, got 70000 in '127.0.0.1:70000'"),
    ("{listen: '::1:80'}",
     "gateway.listen[0]: invalid host '::1' in '::1:80' (write IPv6 as '[::1]:8000')"),
    ("{workers: 0}", "gateway.workers: must be at least 1, got 0"),
    ("{max_body_bytes: lots}",
     "gateway.max_body_bytes: expected a size like '512B', '16KiB' or '10MiB', got 'lots'"),
    ("{timeouts: {connect: 0s}}", "gateway.timeouts.connect: must be more than 0, got 0"),
])
def test_a_bad_gateway_key_is_reported_at_its_key(problems, gateway, problem):
    assert problems(f"gateway: {gateway}") == [problem]


@pytest.mark.parametrize(("text", "problem"), [
    ("state: postgres://x", "state: expected local, memory://, sqlite:///path or "
                            "redis://host:port/db, got 'postgres://x'"),
    ("jobs: {broker: local}", "jobs.broker: the broker needs a URL: sqlite:///path, "
                              "redis://host:port/db or memory://"),
    ("jobs: {broker: 'memory://', queues: {default: {backoff: 10s, max_backoff: 1s}}}",
     "jobs.queues.default.max_backoff: max_backoff (1s) is below backoff (10s)"),
    ("jobs: {broker: 'memory://', workers: {mail: {replicas: 1}}}",
     "jobs.workers.mail.command: required key is missing"),
    ("services: {'my api': {upstreams: ['127.0.0.1:1']}}",
     "services.my api: invalid name 'my api': use letters, digits, '_', '.', '-', starting "
     "with a letter or digit"),
    ("rate_limits: {plans: {free: [10/fortnight]}, default_plan: free}",
     "rate_limits.plans.free[0]: expected a rate like '10/second', '1000/hour' or '100/10s', "
     "got '10/fortnight'"),
    ("rate_limits: {plans: {free: []}, default_plan: free}",
     "rate_limits.plans.free: needs at least 1 item, got 0"),
    ("rate_limits: {key: 'cookie:sid'}",
     "rate_limits.key: expected one of ip | header:NAME, got 'cookie:sid'"),
])
def test_a_bad_key_elsewhere_is_reported_at_its_key(problems, text, problem):
    assert problem in problems(text, check_support=False)


def test_hash_on_without_balance_hash_is_a_warning_not_an_error():
    text = BASE.replace("upstreams:", "hash_on: 'header:X-User'\n    upstreams:")
    assert parse(text).warnings() == [
        "services.api.hash_on: has no effect unless balance is 'hash' (balance is 'p2c')"]
    assert parse(text.replace("hash_on:", "balance: hash\n    hash_on:")).warnings() == []


def test_a_route_that_repeats_an_earlier_match_is_a_warning():
    text = BASE + ("  - {prefix: /a/, service: api, methods: [GET, POST]}\n"
                   "  - {prefix: /a/, service: api, methods: [post, get]}\n"
                   "  - {prefix: /a/, service: api, methods: [GET]}\n")
    assert parse(text).warnings() == [
        "routes[2]: matches the same requests as routes[1], which comes first, so it is never "
        "chosen"]


# -- one list of names: the config's choices are read from the runtime's own tables ----------


def test_the_balance_choices_are_the_balancers_table():
    from surge.upstreams.balancers import BALANCERS

    schema = Config.model_json_schema()["$defs"]["Service"]["properties"]["balance"]
    assert schema["enum"] == list(BALANCERS)
    for name in BALANCERS:
        assert parse(f"services: {{api: {{upstreams: ['127.0.0.1:1'], balance: {name}}}}}"
                     ).services["api"].balance == name


def test_the_rate_limit_choices_are_the_limiters_tables():
    from surge.ratelimit.algorithms import ALGORITHMS
    from surge.ratelimit.settings import ON_STORE_ERROR

    properties = Config.model_json_schema()["$defs"]["RateLimits"]["properties"]
    # shaping holds requests back, which only the library's middleware does
    assert properties["algorithm"]["enum"] == [a for a in ALGORITHMS if a != "shaping"]
    assert properties["on_store_error"]["enum"] == list(ON_STORE_ERROR)


def test_a_queues_backoff_rule_is_the_one_job_options_apply_in_code():
    from surge.jobs.queue import JobOptions

    problem = "max_backoff (1s) is below backoff (10s)"
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        JobOptions(backoff=10.0, max_backoff=1.0)
    with pytest.raises(ConfigError) as error:
        parse("jobs: {broker: 'memory://', queues: {default: {backoff: 10s, max_backoff: 1s}}}")
    assert error.value.problems == [f"jobs.queues.default.max_backoff: {problem}"]
