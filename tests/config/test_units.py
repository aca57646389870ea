"""Unit strings (durations, sizes, rates) and the value types built on them: every accepted
form and every rejected form."""

from __future__ import annotations

import pytest

from surge.config.units import Rate, parse_duration, parse_rate, parse_size
from surge.errors import UnitError


@pytest.mark.parametrize(("text", "seconds"), [
    ("250ms", 0.25), ("2s", 2.0), ("5m", 300.0), ("1h", 3600.0), ("1d", 86400.0),
    ("1.5s", 1.5), (" 10 s ", 10.0), ("30", 30.0), (3, 3.0), (0.5, 0.5), ("0s", 0.0),
])
def test_a_duration_is_read_in_seconds(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "2 seconds", "-1s", "1w", "s", "1.s", True, -3, "2s5"])
def test_a_malformed_duration_is_refused(text):
    with pytest.raises(UnitError):
        parse_duration(text)


@pytest.mark.parametrize(("text", "size"), [
    ("512B", 512), ("16KiB", 16384), ("10MiB", 10 * 1024**2), ("1GiB", 1024**3),
    ("1KB", 1000), ("2MB", 2_000_000), ("1GB", 10**9), ("4k", 4096), ("4K", 4096),
    ("1M", 1024**2), ("1G", 1024**3), ("100", 100), (100, 100), ("1.5KiB", 1536),
])
def test_a_size_is_read_in_bytes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "16 kib", "-1B", "1TiB", "KiB", True, -1, "ten"])
def test_a_malformed_size_is_refused(text):
    with pytest.raises(UnitError):
        parse_size(text)


@pytest.mark.parametrize(("text", "rate"), [
    ("10/second", Rate(10, 1.0)), ("1000/hour", Rate(1000, 3600.0)),
    ("60/minute", Rate(60, 60.0)), ("5/day", Rate(5, 86400.0)), ("100/10s", Rate(100, 10.0)),
    ("1000 per hour", Rate(1000, 3600.0)), ("3/2 minutes", Rate(3, 120.0)),
    ("7/s", Rate(7, 1.0)), ("7/500ms", Rate(7, 0.5)), ("10/Second", Rate(10, 1.0)),
])
def test_a_rate_is_a_count_per_period(text, rate):
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["", "10", "10/fortnight", "0/second", "-1/second",
                                  "ten/second", "10/0s", "second/10"])
def test_a_malformed_rate_is_refused(text):
    with pytest.raises(UnitError):
        parse_rate(text)


def test_a_rate_prints_as_written():
    assert [str(parse_rate(t)) for t in ("60/minute", "100/10s")] == ["60/minute", "100/10s"]


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("interval", "1s", 1.0), ("interval", "500ms", 0.5), ("interval", 3, 3.0),
    ("expect", "200-299", (200, 299)), ("expect", "204", (204, 204)), ("expect", 200, (200, 200)),
])
def test_units_are_accepted_in_the_config_as_strings_or_numbers(field, value, expected):
    from surge.config.models_services import HealthSpec

    assert getattr(HealthSpec.model_validate({field: value}), field) == expected


def test_sizes_and_durations_in_the_gateway_are_parsed():
    from surge.config.models import Gateway

    gateway = Gateway.model_validate({
        "max_header_bytes": "8KiB", "max_body_bytes": "1MiB", "drain": "1m",
        "timeouts": {"connect": "250ms", "client_header": 5, "upstream": "1m", "idle": "2h"},
    })
    assert gateway.max_header_bytes == 8192
    assert (gateway.max_body_bytes, gateway.drain) == (1024**2, 60.0)
    assert gateway.timeouts.model_dump() == {
        "connect": 0.25, "client_header": 5.0, "upstream": 60.0, "client_body": 30.0,
        "upstream_body": 30.0, "idle": 7200.0,
    }
