"""Load profiles for `surge load`: text -> rate over time and requests due. Pure."""

from __future__ import annotations

import pytest

from surge.errors import ConfigError
from surge.scaling.load import percentile
from surge.scaling.profile import Segment, parse_profile


def test_the_issue_example_ramps_holds_then_drops_and_stays_open_ended():
    profile = parse_profile("0->500rps over 30s, hold 60s, ->50rps")
    assert profile.segments == (
        Segment(0.0, 30.0, 0.0, 500.0), Segment(30.0, 60.0, 500.0, 500.0),
        Segment(90.0, None, 50.0, 50.0),
    )
    assert profile.duration is None


@pytest.mark.parametrize(
    ("t", "rate", "due"),
    [
        (0, 0, 0),
        (15, 250, 1875),       # half-way up the ramp: the area of a triangle
        (30, 500, 7500),
        (60, 500, 22500),
        (90, 50, 37500),
        (100, 50, 38000),
    ],
)
def test_rate_and_requests_due_over_time(t, rate, due):
    profile = parse_profile("0->500rps over 30s, hold 60s, ->50rps")
    assert profile.rate_at(t) == rate
    assert profile.sent_by(t) == pytest.approx(due)


@pytest.mark.parametrize(
    ("text", "duration", "rates"),
    [
        ("100rps for 10s", 10.0, {0: 100, 9.9: 100}),
        ("20 rps for 5s, 200rps for 5s", 10.0, {1: 20, 6: 200}),
        ("->80/s for 4s", 4.0, {0: 80, 3: 80}),   # a jump, then hold
        ("->80/s over 4s", 4.0, {0: 0, 3: 60}),   # a ramp from the rate so far
        ("10->20rps over 10s", 10.0, {0: 10, 5: 15, 10: 20}),
        ("50rps for 2s, ->150rps over 2s, hold 1m", 64.0, {1: 50, 3: 100, 30: 150}),
        ("5rps for 500ms, hold 1.5s", 2.0, {0.2: 5, 1.9: 5}),
    ],
)
def test_profile_forms(text, duration, rates):
    profile = parse_profile(text)
    assert profile.duration == duration
    assert {t: profile.rate_at(t) for t in rates} == rates


def test_past_a_finite_profile_its_last_rate_goes_on():
    profile = parse_profile("10rps for 2s")
    assert profile.sent_by(2) == 20
    assert profile.sent_by(5) == 50


@pytest.mark.parametrize(
    "text",
    ["", "fast", "->rps", "hold", "hold forever", "100rps, hold 10s", "10rps for 3 weeks"],
)
def test_a_profile_that_does_not_parse_is_a_config_error_naming_the_segment(text):
    with pytest.raises(ConfigError, match="profile segment"):
        parse_profile(text)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1, 2, 3, 4], 0.5, 2), ([1, 2, 3, 4], 0.95, 4), ([5], 0.99, 5),
        (list(range(1, 101)), 0.95, 95),
    ],
)
def test_percentile_is_nearest_rank(values, q, expected):
    assert percentile(values, q) == expected
