"""Parsing of the unit strings surge.yaml uses: durations (`250ms`, `2s`, `5m`, `1h`),
sizes (`16KiB`, `10MiB`) and rates (`10/second`, `1000/hour`). Pure; no pydantic here."""

from __future__ import annotations

import re
from dataclasses import dataclass

from surge.errors import UnitError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|KB|MB|GB|k|K|M|G)?\s*$")
_SIZE_UNITS = {
    "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3,
    "KB": 1000, "MB": 1000**2, "GB": 1000**3, "k": 1024, "K": 1024, "M": 1024**2, "G": 1024**3,
}

_RATE = re.compile(r"^\s*(\d+)\s*(?:/|\s+per\s+)\s*(\d+\s*)?([a-z]+)\s*$")
_PERIODS = {
    "second": 1, "seconds": 1, "s": 1, "sec": 1,
    "minute": 60, "minutes": 60, "m": 60, "min": 60,
    "hour": 3600, "hours": 3600, "h": 3600,
    "day": 86400, "days": 86400, "d": 86400,
}


def parse_duration(value: str | int | float) -> float:
    """Seconds in a duration: `250ms` -> 0.25, `5m` -> 300.0. A bare number means seconds."""
    if isinstance(value, bool):
        raise UnitError(f"expected a duration like '2s', got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise UnitError(f"a duration cannot be negative, got {value!r}")
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise UnitError(f"expected a duration like '250ms', '2s', '5m' or '1h', got {value!r}")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2) or "s"]


def parse_size(value: str | int) -> int:
    """Bytes in a size: `16KiB` -> 16384. A bare number means bytes."""
    if isinstance(value, bool):
        raise UnitError(f"expected a size like '16KiB', got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise UnitError(f"a size cannot be negative, got {value!r}")
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise UnitError(f"expected a size like '512B', '16KiB' or '10MiB', got {value!r}")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2) or "B"])


@dataclass(frozen=True, slots=True)
class Rate:
    """`limit` requests per `period` seconds."""

    limit: int
    period: float

    def __str__(self) -> str:
        for name, seconds in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
            if self.period == seconds:
                return f"{self.limit}/{name}"
        return f"{self.limit}/{self.period:g}s"


def parse_rate(value: str) -> Rate:
    """`10/second` -> Rate(10, 1.0); also `100/10s`, `1000 per hour`."""
    if isinstance(value, Rate):
        return value
    text = str(value).strip().lower()
    m = _RATE.match(text)
    if m:
        count, multiple, unit = int(m.group(1)), m.group(2), m.group(3)
        if unit in _PERIODS:
            return _rate(count, _PERIODS[unit] * int(multiple or 1), value)
    m = re.match(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?\s*(?:ms|s|m|h|d))\s*$", text)
    if m:
        return _rate(int(m.group(1)), parse_duration(m.group(2)), value)
    raise UnitError(
        f"expected a rate like '10/second', '1000/hour' or '100/10s', got {value!r}"
    )


def _rate(limit: int, period: float, original: object) -> Rate:
    if limit <= 0 or period <= 0:
        raise UnitError(f"a rate needs a positive count and period, got {original!r}")
    return Rate(limit, float(period))
