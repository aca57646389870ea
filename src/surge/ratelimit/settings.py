"""How rate limiting is set up, as one immutable value: the plans, the algorithm, who a request
counts against, what to do when the store fails. Pure: no I/O.

Built directly by a library user (`RateLimitSettings(plans={"free": ["10/second"]})`, rates
and `max_delay` written as in surge.yaml or already parsed), or by `from_config` from the
`rate_limits` section (the validated config model, or a mapping in its form). Either way the
values are checked here, by the functions the config models call (`surge.config.checks`), so
there is one rule per value and a nonsense one is a ValueError with the file's words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from surge.config.checks import (
    CLIENT_KEY_FORMS,
    InvalidValues,
    Problems,
    check_networks,
    check_one_of,
    check_reference,
    check_request_key,
    unknown_name,
)
from surge.config.units import Rate, parse_duration, parse_rate
from surge.errors import ConfigError
from surge.ratelimit.algorithms import check_algorithm

DEFAULT_PLANS = {"anonymous": (Rate(60, 60.0),)}
ON_STORE_ERROR = ("allow", "deny")


@dataclass(frozen=True)
class RateLimitSettings:
    # Written forms (`"10/second"`, a lone rate, `"500ms"`) become their parsed values in
    # `__post_init__`, so after construction `plans` is dict[str, tuple[Rate, ...]] and
    # `max_delay` seconds.
    plans: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_PLANS))
    default_plan: str = "anonymous"
    algorithm: str = "gcra"
    key: str = "ip"  # ip | header:NAME -- who a request without an API key counts against
    on_store_error: str = "allow"  # allow | deny
    dry_run: bool = False  # count and log would-be rejections, reject nothing
    max_delay: Any = 1.0  # shaping: the longest a request may be held (seconds)
    trusted_proxies: Sequence[str] = ()  # CIDRs whose X-Forwarded-For is believed

    def __post_init__(self) -> None:
        problems = Problems()
        plans = _plans(self.plans, problems)
        if plans:
            problems.check("default_plan", check_reference, self.default_plan, "plan", plans)
        problems.check("algorithm", check_algorithm, self.algorithm)
        problems.check("key", check_request_key, self.key, *CLIENT_KEY_FORMS)
        problems.check("on_store_error", check_one_of, self.on_store_error, ON_STORE_ERROR)
        max_delay = problems.check("max_delay", parse_duration, self.max_delay)
        problems.check("trusted_proxies", check_networks, self.trusted_proxies)
        problems.raise_any()
        object.__setattr__(self, "plans", plans)
        object.__setattr__(self, "max_delay", max_delay)
        object.__setattr__(self, "trusted_proxies", tuple(self.trusted_proxies))

    @classmethod
    def from_config(cls, section: Any, where: str = "rate_limits") -> RateLimitSettings:
        """From the `rate_limits` section: the config model (already valid) or a mapping of
        the same keys; every problem is reported with its location under `where`."""
        names = [f.name for f in fields(cls)]
        if isinstance(section, Mapping):
            given = {name: section[name] for name in names if section.get(name) is not None}
        else:
            given = {name: getattr(section, name) for name in names if hasattr(section, name)}
        try:
            return cls(**given)
        except InvalidValues as exc:
            raise ConfigError([f"{where}.{problem}" for problem in exc.problems]) from None


def unknown_plan(name: str, plans: Mapping[str, Any]) -> str:
    """The message for a plan name that is not configured, with a suggestion."""
    return unknown_name("plan", name, list(plans))


def _plans(raw: Any, problems: Problems) -> dict[str, tuple[Rate, ...]]:
    if not isinstance(raw, Mapping) or not raw:
        problems.found.append("plans: expected a mapping of plan name to a list of rates")
        return {}
    plans = {}
    for name, rates in raw.items():
        if isinstance(rates, str | Rate):
            rates = [rates]
        if not rates:
            problems.found.append(f"plans.{name}: a plan needs at least one rate")
            continue
        parsed = [problems.check(f"plans.{name}[{i}]", parse_rate, value)
                  for i, value in enumerate(rates)]
        plans[str(name)] = tuple(rate for rate in parsed if rate is not None)
    return plans
