"""The `rate_limits` section of surge.yaml as the limiter needs it, validated with locations.

Accepts a plain mapping (the YAML as loaded, or a library user's dict) or any object with the
same attributes (the pydantic model from `surge.config`). Pure: no I/O.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from surge.config.units import Rate, parse_duration, parse_rate
from surge.errors import ConfigError, UnitError
from surge.ratelimit.algorithms import ALGORITHMS

DEFAULT_PLANS = {"anonymous": (Rate(60, 60.0),)}


@dataclass(frozen=True)
class RateLimitSettings:
    plans: dict[str, tuple[Rate, ...]] = field(default_factory=lambda: dict(DEFAULT_PLANS))
    default_plan: str = "anonymous"
    algorithm: str = "gcra"
    key: str = "ip"  # ip | header:NAME -- who a request without an API key counts against
    on_store_error: str = "allow"  # allow | deny
    dry_run: bool = False  # count and log would-be rejections, reject nothing
    max_delay: float = 1.0  # shaping: the longest a request may be held
    trusted_proxies: tuple[str, ...] = ()  # CIDRs whose X-Forwarded-For is believed

    @classmethod
    def from_config(cls, section: Any, where: str = "rate_limits") -> RateLimitSettings:
        """Build from the config section; every problem is reported with its location."""
        get = section.get if isinstance(section, Mapping) else (
            lambda name, default=None: getattr(section, name, default)
        )
        problems: list[str] = []
        plans = _plans(get("plans", None), f"{where}.plans", problems)
        default_plan = get("default_plan", None) or "anonymous"
        if plans and default_plan not in plans:
            problems.append(f"{where}.default_plan: {unknown_plan(default_plan, plans)}")
        algorithm = get("algorithm", None) or "gcra"
        if algorithm not in ALGORITHMS:
            problems.append(
                f"{where}.algorithm: unknown algorithm {algorithm!r} "
                f"(expected one of: {', '.join(ALGORITHMS)})"
            )
        key = get("key", None) or "ip"
        if key != "ip" and not (key.startswith("header:") and len(key) > 7):
            problems.append(f"{where}.key: expected 'ip' or 'header:NAME', got {key!r}")
        on_error = get("on_store_error", None) or "allow"
        if on_error not in ("allow", "deny"):
            problems.append(f"{where}.on_store_error: expected 'allow' or 'deny', got {on_error!r}")
        max_delay = 1.0
        try:
            max_delay = parse_duration(get("max_delay", None) or 1.0)
        except UnitError as exc:
            problems.append(f"{where}.max_delay: {exc}")
        if problems:
            raise ConfigError(problems)
        return cls(
            plans=plans, default_plan=default_plan, algorithm=algorithm, key=key,
            on_store_error=on_error, dry_run=bool(get("dry_run", False)), max_delay=max_delay,
            trusted_proxies=tuple(get("trusted_proxies", None) or ()),
        )


def unknown_plan(name: str, plans: Mapping[str, Any]) -> str:
    """The message for a plan name that is not configured, with a suggestion."""
    close = difflib.get_close_matches(name, list(plans), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(plans)})"
    return f"unknown plan {name!r}{hint}"


def _plans(raw: Any, where: str, problems: list[str]) -> dict[str, tuple[Rate, ...]]:
    if raw is None:
        return dict(DEFAULT_PLANS)
    if not isinstance(raw, Mapping) or not raw:
        problems.append(f"{where}: expected a mapping of plan name to a list of rates")
        return {}
    plans = {}
    for name, rates in raw.items():
        if isinstance(rates, str | Rate):
            rates = [rates]
        if not rates:
            problems.append(f"{where}.{name}: a plan needs at least one rate")
            continue
        parsed = []
        for i, value in enumerate(rates):
            try:
                parsed.append(parse_rate(value))
            except UnitError as exc:
                problems.append(f"{where}.{name}[{i}]: {exc}")
        plans[str(name)] = tuple(parsed)
    return plans
