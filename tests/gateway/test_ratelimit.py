"""Rate limiting in a running gateway (in-process store): 429 problem+json with Retry-After
past the limit, RateLimit-Policy and RateLimit on every response of a limited route, route
plans and costs, API keys on their own plans (created, revoked and re-planned through
`surge keys` and the admin API while the gateway runs), 401 for bad keys without counting
them, per-plan metrics, `/api/ratelimits/{key}`, dry-run and reloads.

Requests without a key are counted per `X-Client` header, so each test has its own quota."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from gateway.stack import (
    assert_problem,
    eventually,
    failed_count,
    metric,
    service,
    surge_yaml,
    with_changes,
)

pytestmark = pytest.mark.integration

PLANS = {"anonymous": ["5/minute"], "free": ["3/minute"], "premium": ["6/minute"],
         "tight": ["1/minute"], "spare": ["50/minute"]}
ROUTES = [
    {"prefix": "/limited/", "service": "app", "strip_prefix": True, "rate_limit": True},
    {"prefix": "/costly/", "service": "app", "strip_prefix": True, "rate_limit": {"cost": 2}},
    {"prefix": "/tight/", "service": "app", "strip_prefix": True, "rate_limit": {"plan": "tight"}},
    {"prefix": "/open/", "service": "app", "strip_prefix": True},
]


def limited_yaml(fleet: Any, routes: list[dict[str, Any]] = ROUTES, **rate_limits: Any) -> str:
    def add(data: dict[str, Any]) -> None:
        data["rate_limits"] = {"key": "header:X-Client", "plans": PLANS, **rate_limits}
    return with_changes(surge_yaml({"app": service(fleet)}, routes), add)


@pytest.fixture(scope="module")
def gw(stack):
    return stack.gateway(limited_yaml(stack.upstreams(1)))


def get(gw, path: str, client: str = "", key: str | None = None) -> httpx.Response:
    headers = {"X-Client": client} if client else {}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.get(gw.url + path, headers=headers, timeout=5)


def statuses(gw, path: str, times: int, **who: Any) -> list[int]:
    return [get(gw, path, **who).status_code for _ in range(times)]


def cli_keys(gw, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "surge.cli", "keys", *args,
                           "--config", str(gw.config_path)],
                          capture_output=True, text=True, timeout=30, check=True)
    return done.stdout.strip()


def admin_key(gw, name: str, plan: str) -> dict[str, Any]:
    response = httpx.post(f"{gw.admin_url}/api/keys", json={"name": name, "plan": plan})
    assert response.status_code == 201, response.text
    return response.json()


def decisions(gw) -> float:
    return metric(gw.admin_url, "surge_ratelimit_decisions_total")


def test_past_the_limit_requests_get_429_problem_with_retry_after(gw):
    answers = [get(gw, "/limited/name", "alpha") for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert [a.headers["RateLimit"] for a in answers] == [
        f'"anonymous";r={r};t={t}' for r, t in ((4, 12), (3, 24), (2, 36), (1, 48), (0, 60),
                                                  (0, 60))]
    rejected = answers[-1]
    document = assert_problem(429, rejected.headers["content-type"], rejected.content, 429)
    assert document["detail"] == "rate limit of plan 'anonymous' exceeded"
    assert 1 <= int(rejected.headers["Retry-After"]) <= 12
    assert failed_count(gw.admin_url, "rate_limited") >= 1


def test_every_response_of_a_limited_route_carries_the_policy(gw):
    for path in ("/limited/name", "/limited/status/503", "/limited/status/404"):
        assert get(gw, path, "beta").headers["RateLimit-Policy"] == '"anonymous";q=5;w=60'
    assert "RateLimit-Policy" not in get(gw, "/open/name", "beta").headers


def test_a_route_cost_takes_that_many_units_per_request(gw):
    answers = [get(gw, "/costly/name", "gamma") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert [a.headers["RateLimit"].split(";")[1] for a in answers] == ["r=3", "r=1", "r=1"]


def test_a_route_plan_counts_requests_without_a_key_on_that_plan(gw):
    answers = [get(gw, "/tight/name", "delta") for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 429]
    assert answers[0].headers["RateLimit-Policy"] == '"tight";q=1;w=60'
    assert get(gw, "/limited/name", "delta").status_code == 200  # another plan, another count


def test_free_and_premium_keys_each_get_their_own_plans_limit(gw):
    free = cli_keys(gw, "create", "--name", "free-user", "--plan", "free")
    premium = admin_key(gw, "premium-user", "premium")["key"]
    eventually(lambda: get(gw, "/open/name", key=free).status_code != 401, 1.5,
               "a key made with `surge keys create` is known within a second")
    assert statuses(gw, "/limited/name", 4, key=free) == [200] * 3 + [429]
    assert statuses(gw, "/limited/name", 7, key=premium) == [200] * 6 + [429]
    assert get(gw, "/limited/name", key=premium).headers["RateLimit-Policy"] == (
        '"premium";q=6;w=60')


def test_a_keys_own_plan_wins_over_the_routes_plan(gw):
    key = admin_key(gw, "planned", "spare")["key"]
    answer = get(gw, "/tight/name", key=key)
    assert answer.status_code == 200
    assert answer.headers["RateLimit-Policy"] == '"spare";q=50;w=60'


def test_a_revoked_key_gets_401_within_a_second(gw):
    created = admin_key(gw, "leaver", "spare")
    assert get(gw, "/limited/name", key=created["key"]).status_code == 200
    assert "revoked" in cli_keys(gw, "revoke", created["id"])
    revoked_at = time.monotonic()
    eventually(lambda: get(gw, "/limited/name", key=created["key"]).status_code == 401, 1.5,
               "the revoked key is refused")
    assert time.monotonic() - revoked_at < 1.5
    answer = get(gw, "/limited/name", key=created["key"])
    assert_problem(answer.status_code, answer.headers["content-type"], answer.content, 401)
    assert "RateLimit" not in answer.headers


def test_a_key_moved_to_another_plan_counts_on_it_within_a_second(gw):
    created = admin_key(gw, "upgrader", "free")
    response = httpx.put(f"{gw.admin_url}/api/keys/{created['id']}/plan", json={"plan": "spare"})
    assert response.json()["plan"] == "spare"
    eventually(lambda: get(gw, "/limited/name", key=created["key"]).headers.get(
        "RateLimit-Policy") == '"spare";q=50;w=60', 1.0, "the new plan applies")


@pytest.mark.parametrize("header", [
    "Bearer nonsense", "Bearer sk_" + "a" * 500, "Bearer sk_" + "A" * 43, "Basic Zm9vOmJhcg==",
])
def test_garbage_and_unknown_keys_get_401_without_touching_the_store(gw, header):
    before = decisions(gw)
    answer = httpx.get(gw.url + "/limited/name", headers={"Authorization": header,
                                                          "X-Client": "epsilon"})
    if header.startswith("Basic"):  # not an API key at all: counted as a keyless request
        assert answer.status_code == 200
        return
    assert_problem(answer.status_code, answer.headers["content-type"], answer.content, 401)
    assert httpx.get(gw.url + "/limited/name", headers={"X-API-Key": "sk_short"}).status_code == 401
    assert decisions(gw) == before


def test_per_plan_metrics_count_allowed_and_rejected_requests(gw):
    def count(outcome: str) -> float:
        return metric(gw.admin_url, "surge_ratelimit_decisions_total", plan="tight",
                      outcome=outcome)
    allowed, rejected = count("allowed"), count("rejected")
    assert statuses(gw, "/tight/name", 3, client="zeta") == [200, 429, 429]
    assert (count("allowed") - allowed, count("rejected") - rejected) == (1, 2)
    assert metric(gw.admin_url, "surge_ratelimit_store_errors_total") == 0


def test_the_admin_api_shows_the_state_of_a_key_or_a_client(gw):
    created = admin_key(gw, "watched", "premium")
    statuses(gw, "/limited/name", 2, key=created["key"])
    state = httpx.get(f"{gw.admin_url}/api/ratelimits/{created['id']}").json()
    assert (state["plan"], state["remaining"], state["limited"]) == ("premium", 4, False)
    statuses(gw, "/tight/name", 1, client="eta")
    state = httpx.get(f"{gw.admin_url}/api/ratelimits/header:eta?plan=tight").json()
    assert (state["key"], state["remaining"], state["limited"]) == ("header:eta", 0, True)
    assert httpx.get(f"{gw.admin_url}/api/ratelimits/key_unknown").status_code == 404


def test_the_admin_api_lists_keys_without_their_hashes_and_refuses_unknown_plans(gw):
    created = admin_key(gw, "listed", "free")
    keys = httpx.get(f"{gw.admin_url}/api/keys").json()["keys"]
    (listed,) = [k for k in keys if k["id"] == created["id"]]
    assert listed["active"] and "key_hash" not in listed and "key" not in listed
    refused = httpx.post(f"{gw.admin_url}/api/keys", json={"name": "x", "plan": "fre"})
    document = assert_problem(refused.status_code, refused.headers["content-type"],
                              refused.content, 400)
    assert "did you mean 'free'" in document["detail"]
    assert httpx.delete(f"{gw.admin_url}/api/keys/key_nope").status_code == 404
    revoked = httpx.delete(f"{gw.admin_url}/api/keys/{created['id']}").json()
    assert revoked["active"] is False


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_count(upstreams, gateway):
    gw = gateway(limited_yaml(upstreams(1), key="ip", trusted_proxies=["127.0.0.1/32"]))

    def via(client: str) -> int:
        return httpx.get(gw.url + "/tight/name", headers={"X-Forwarded-For": client}).status_code
    assert [via("203.0.113.7"), via("203.0.113.7"), via("203.0.113.8")] == [200, 429, 200]
    state = httpx.get(f"{gw.admin_url}/api/ratelimits/203.0.113.7?plan=tight").json()
    assert (state["key"], state["limited"]) == ("ip:203.0.113.7", True)


def test_dry_run_lets_everything_through_and_counts_would_be_rejections(upstreams, gateway):
    gw = gateway(limited_yaml(upstreams(1), dry_run=True))
    assert statuses(gw, "/tight/name", 4, client="theta") == [200] * 4
    assert metric(gw.admin_url, "surge_ratelimit_decisions_total", plan="tight",
                  outcome="dry_run_rejected") == 3
    assert failed_count(gw.admin_url, "rate_limited") == 0
    eventually(lambda: "dry-run: would reject header:theta on plan tight" in
               gw.stderr_path.read_text(), 2.0, "the would-be rejection is logged")


def test_a_reload_keeps_the_counts_while_the_plans_stay_the_same(upstreams, gateway):
    fleet = upstreams(1)
    gw = gateway(limited_yaml(fleet))
    assert statuses(gw, "/tight/name", 1, client="iota") == [200]
    text = gw.config_path.read_text()
    gw.config_path.write_text(with_changes(text, lambda d: d["routes"].append(
        {"prefix": "/more/", "service": "app", "strip_prefix": True,
         "rate_limit": {"plan": "tight"}})))
    gw.reload()
    eventually(lambda: get(gw, "/more/name", "kappa").status_code != 404, 5.0, "reloaded")
    assert statuses(gw, "/tight/name", 1, client="iota") == [429]  # the count survived
    gw.config_path.write_text(with_changes(text, lambda d: d["rate_limits"]["plans"].update(
        tight=["2/minute"])))
    gw.reload()
    fresh = (f"mu-{n}" for n in itertools.count())  # first requests only: nothing rejected
    eventually(lambda: get(gw, "/tight/name", next(fresh)).headers.get("RateLimit-Policy") ==
               '"tight";q=2;w=60', 5.0, "the new plan applies")
    # new limits start a new count; the metrics keep the old one (counters never go back)
    assert metric(gw.admin_url, "surge_ratelimit_decisions_total", plan="tight",
                  outcome="rejected") == 1
