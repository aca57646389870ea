"""The Limiter facade: plans, headers, dry-run, counters, bad input and a failing store."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import time

import pytest

from surge.config import parse
from surge.config.units import Rate
from surge.errors import ConfigError
from surge.ratelimit.limiter import Limiter
from surge.ratelimit.settings import RateLimitSettings

SECTION = {
    "plans": {"anonymous": ["3/minute"], "free": ["10/second", "1000/hour"],
              "premium": ["100/second"]},
    "default_plan": "anonymous",
}


def limiter(**overrides) -> Limiter:
    return Limiter(RateLimitSettings.from_config({**SECTION, **overrides}))


def test_each_plan_gets_its_own_limit():
    lim = limiter()
    assert sum(lim.hit_local("a", "free", now=0.0).allowed for _ in range(20)) == 10
    assert sum(lim.hit_local("b", "premium", now=0.0).allowed for _ in range(200)) == 100
    assert sum(lim.hit_local("c", now=0.0).allowed for _ in range(5)) == 3  # default plan


def test_headers_follow_the_ietf_draft_structured_fields():
    lim = limiter()
    decision = lim.hit_local("a", "premium", now=0.0)
    assert lim.headers(decision, "premium") == [
        (b"RateLimit-Policy", b'"premium";q=100;w=1'),
        (b"RateLimit", b'"premium";r=99;t=1'),
    ]


def test_a_plan_with_several_limits_names_each_and_reports_the_tightest():
    lim = limiter(plans={"free": ["10/second", "5/hour"]}, default_plan="free")
    decision = lim.hit_local("a", now=0.0)
    headers = dict(lim.headers(decision))
    assert headers[b"RateLimit-Policy"] == b'"free-1s";q=10;w=1, "free-1h";q=5;w=3600'
    assert headers[b"RateLimit"] == b'"free-1h";r=4;t=720'


def test_raw_header_lines_carry_the_same_fields_for_the_gateway():
    lim = limiter()
    for _ in range(4):
        decision = lim.hit_local("a", now=0.0)
    lines = lim.headers_raw(decision)
    assert lines == b"".join(b"%s: %s\r\n" % pair for pair in lim.headers(decision))
    assert lines.endswith(b"Retry-After: 20\r\n")


def test_a_rejection_carries_retry_after_in_whole_seconds():
    lim = limiter()
    for _ in range(3):
        lim.hit_local("a", now=0.0)
    decision = lim.hit_local("a", now=0.0)
    assert not decision.allowed
    assert dict(lim.headers(decision))[b"Retry-After"] == b"20"  # 3/minute: one per 20 s


def test_outcomes_are_counted_per_plan():
    lim = limiter()
    for _ in range(5):
        lim.hit_local("a", now=0.0)
    assert lim.counters()["plans"]["anonymous"] == {
        "allowed": 3, "rejected": 2, "dry_run_rejected": 0}


def test_dry_run_counts_and_logs_would_be_rejections_but_allows(caplog):
    lim = limiter(dry_run=True)
    with caplog.at_level(logging.INFO, "surge.ratelimit"):
        decisions = [lim.hit_local("a", now=0.0) for _ in range(5)]
    assert all(d.allowed for d in decisions)
    assert lim.counters()["plans"]["anonymous"]["dry_run_rejected"] == 2
    assert "would reject a" in caplog.text


async def test_peek_and_state_show_a_key_without_consuming():
    lim = limiter()
    lim.hit_local("a", "free")
    state = await lim.state("a", "free")
    assert state["remaining"] == 9 and state["limited"] is False
    assert [x["policy"] for x in state["limits"]] == ["free-1s", "free-1h"]
    assert (await lim.state("a", "free"))["remaining"] == 9


def test_unknown_plan_is_a_config_error_with_a_suggestion():
    with pytest.raises(ConfigError, match="did you mean 'premium'"):
        limiter().hit_local("a", "premum")


def test_negative_cost_is_refused():
    with pytest.raises(ValueError, match="cost"):
        limiter().hit_local("a", cost=-1)


def test_bad_settings_are_reported_with_their_location():
    with pytest.raises(ConfigError) as error:
        RateLimitSettings.from_config({
            "plans": {"free": ["10/fortnight", "5/hour"], "empty": []},
            "default_plan": "fre", "algorithm": "leaky", "on_store_error": "maybe",
            "key": "cookie",
        })
    problems = "\n".join(error.value.problems)
    assert "rate_limits.plans.free[0]: expected a rate" in problems
    assert "rate_limits.plans.empty: a plan needs at least one rate" in problems
    assert "rate_limits.default_plan: unknown plan 'fre' (did you mean 'free'?)" in problems
    assert "rate_limits.algorithm: unknown algorithm 'leaky'" in problems
    assert "rate_limits.on_store_error: expected 'allow' or 'deny'" in problems
    assert "rate_limits.key: expected one of ip | header:NAME, got 'cookie'" in problems


def test_settings_built_in_code_are_checked_with_the_config_files_words():
    """One rule, one place: the constructor calls the checks the config model calls, so an
    app that builds its settings in code reads the sentence `surge check` prints."""
    with pytest.raises(ValueError, match=re.escape("key: expected one of ip | header:NAME, got")):
        RateLimitSettings(key="x")
    with pytest.raises(ValueError, match=r"default_plan: unknown plan 'fre' \(did you mean"):
        RateLimitSettings(plans={"free": ["10/second"]}, default_plan="fre")
    with pytest.raises(ConfigError) as error:
        parse("rate_limits: {plans: {free: [10/second]}, default_plan: fre, key: x}")
    assert set(error.value.problems) == {
        "rate_limits.default_plan: unknown plan 'fre' (did you mean 'free'?)",
        "rate_limits.key: expected one of ip | header:NAME, got 'x'"}


def test_settings_take_rates_and_delays_as_written_in_surge_yaml():
    settings = RateLimitSettings(plans={"free": "10/second"}, default_plan="free",
                                 algorithm="shaping", max_delay="200ms")
    assert settings.plans == {"free": (Rate(10, 1.0),)} and settings.max_delay == 0.2


def test_hit_local_refuses_a_remote_store(redis_url):
    lim = Limiter(RateLimitSettings(), redis_url)
    assert not lim.is_local
    with pytest.raises(TypeError, match="await hit"):
        lim.hit_local("a")


@pytest.mark.integration
@pytest.mark.parametrize("on_error", ["allow", "deny"])
async def test_a_dead_store_follows_on_store_error_then_resumes_when_back(
    throwaway_redis, on_error, caplog
):
    settings = RateLimitSettings.from_config({**SECTION, "on_store_error": on_error})
    lim = Limiter(settings, throwaway_redis.url, store_timeout=0.2)
    assert [(await lim.hit("a")).allowed for _ in range(2)] == [True, True]

    throwaway_redis.kill()
    with caplog.at_level(logging.WARNING, "surge.ratelimit"):
        during = [await lim.hit("a") for _ in range(3)]
        during += await asyncio.gather(*(lim.hit("a") for _ in range(20)))  # batched calls
    assert [d.allowed for d in during] == [on_error == "allow"] * 23
    assert lim.store_errors == 23
    assert caplog.text.count("rate limit store failed") == 1  # logged once per interval

    throwaway_redis.start()  # same port, empty (no persistence): a fresh quota
    after = [await lim.hit("a") for _ in range(4)]
    assert [d.allowed for d in after] == [True, True, True, False]
    assert lim.store_errors == 23
    await lim.close()


@pytest.mark.integration
async def test_a_store_that_hangs_is_given_up_on_within_the_timeout(throwaway_redis):
    settings = RateLimitSettings.from_config({**SECTION, "on_store_error": "deny"})
    lim = Limiter(settings, throwaway_redis.url, store_timeout=0.2)
    assert (await lim.hit("a")).allowed
    throwaway_redis.process.send_signal(signal.SIGSTOP)  # alive but never answers
    try:
        started = time.monotonic()
        decision = await lim.hit("a")
        waited = time.monotonic() - started
    finally:
        throwaway_redis.process.send_signal(signal.SIGCONT)
    assert not decision.allowed and lim.store_errors == 1
    assert waited < 1.0  # bounded by the 0.2 s store timeout, never a hang
    await lim.close()


def test_the_gates_shortcut_agrees_with_its_decide():
    """A caller taking the gate's shortcut inline, as its docs say, gets the same answers,
    counts and remaining quota as one that always calls `decide`."""
    inline, plain = limiter(), limiter()
    g, h = inline.gate("premium"), plain.gate("premium")
    assert g.table is not None and g.lines == h.decide("warm", 0.0)[1]

    def take(identity: str, now: float) -> tuple[bool, bytes]:
        state = g.table.get(identity)
        if state.__class__ is float and state < now:
            g.table[identity] = now + g.step
            g.plan.allowed += 1
            return True, g.lines
        return g.decide(identity, now)

    h.plan.allowed = 0
    times = [0.0, 0.5, 0.5, 0.52, 0.6, 3.0, 3.001] + [3.002] * 120
    assert [take("a", t) for t in times] == [h.decide("a", t) for t in times]
    assert inline.counters() == plain.counters()


def test_a_plan_with_several_limits_has_no_shortcut_but_the_same_gate():
    lim = limiter()
    gate = lim.gate("free")
    assert gate.table is None
    assert [gate.decide("a", 0.0)[0] for _ in range(11)] == [True] * 10 + [False]
    assert lim.counters()["plans"]["free"]["rejected"] == 1


def test_the_settings_take_every_key_of_the_rate_limits_section():
    """`from_config` hands the section over by name: a key added to the model and not to the
    settings would be accepted in the file and then dropped."""
    from dataclasses import fields

    from surge.config.models import RateLimits

    assert set(RateLimits.model_fields) <= {f.name for f in fields(RateLimitSettings)}
    section = parse("rate_limits: {plans: {free: [10/second]}, default_plan: free, "
                    "key: 'header:X-Tenant', dry_run: true, trusted_proxies: [10.0.0.0/8], "
                    "algorithm: fixed_window, on_store_error: deny}").rate_limits
    assert RateLimitSettings.from_config(section) == RateLimitSettings(
        plans={"free": (Rate(10, 1.0),)}, default_plan="free", key="header:X-Tenant",
        dry_run=True, trusted_proxies=("10.0.0.0/8",), algorithm="fixed_window",
        on_store_error="deny")
