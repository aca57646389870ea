"""Checks of values that the surge.yaml models and the runtime objects share: each is written
once here and raises `ValueError` with the message a user reads. A model's validator calls it,
so pydantic reports the problem at its key in the file; the constructor of a runtime object a
library user builds directly (`RateLimitSettings`, `PolicySpec`, `JobOptions`) calls the same
function, so a nonsense value is refused there with the same words.

Pure and free of pydantic: the runtime packages import it without loading the models."""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

from croniter import croniter

T = TypeVar("T")

# RFC 9110 token characters: what a header or cookie name may contain.
TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")

# Who a request counts against for rate limiting: `ip` or `header:NAME`.
CLIENT_KEY_FORMS: tuple[tuple[str, ...], tuple[str, ...]] = (("ip",), ("header",))


def unknown_name(kind: str, name: str, known: Collection[str]) -> str:
    """The message for a reference to a `kind` (plan, service) that is not defined."""
    if not known:
        return f"unknown {kind} {name!r} (no {kind}s are defined)"
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"defined: {', '.join(sorted(known))}"
    return f"unknown {kind} {name!r} ({hint})"


def check_reference(name: str, kind: str, known: Collection[str] | None) -> None:
    """Raise when `name` is not among `known` (None: the names are unknown, do not check)."""
    if known is not None and name not in known:
        raise ValueError(unknown_name(kind, name, known))


def check_http_url(url: str) -> str:
    """An absolute http(s) URL, as a `Link` or webhook target must be."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{url!r} is not an absolute http:// or https:// URL")
    return url


def check_absolute(path: str) -> str:
    """A path (a route's prefix, a health check's path) as a request carries it."""
    if not path.startswith("/"):
        raise ValueError(f"must start with '/', got {path!r}")
    return path


def check_one_of(value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        quoted = [repr(c) for c in choices]
        listed = f"{', '.join(quoted[:-1])} or {quoted[-1]}" if len(quoted) > 1 else quoted[0]
        raise ValueError(f"expected {listed}, got {value!r}")


def check_request_key(value: str, plain: Sequence[str], prefixed: Sequence[str]) -> str:
    """`value` is one of `plain` (`ip`) or `PREFIX:NAME` with a token NAME (`header:X-Tenant`)."""
    kind, sep, name = value.partition(":")
    if (not sep and kind in plain) or (sep and kind in prefixed and TOKEN.match(name)):
        return value
    forms = [*plain, *(f"{p}:NAME" for p in prefixed)]
    raise ValueError(f"expected one of {' | '.join(forms)}, got {value!r}")


def check_not_below(value: float, floor: float, name: str, floor_name: str,
                    unit: str = "") -> None:
    """`max (2) is below min (5)`, `max_backoff (1s) is below backoff (10s)`."""
    if value < floor:
        raise ValueError(f"{name} ({value:g}{unit}) is below {floor_name} ({floor:g}{unit})")


def check_floors(floors: Iterable[int], high: int) -> None:
    """Each scaling schedule floor is at most `max`."""
    for i, low in enumerate(floors):
        if low > high:
            raise ValueError(f"schedule[{i}].min ({low}) is above max ({high})")


def check_cron(expression: str) -> str:
    if not croniter.is_valid(expression):
        raise ValueError(f"invalid cron expression {expression!r}")
    return expression


def check_any_set(values: dict[str, object]) -> None:
    """At least one of the named values is not None (the autoscaler's targets)."""
    if all(value is None for value in values.values()):
        raise ValueError(f"set at least one of {', '.join(values)}")


def check_wakes(low: int, queue_target: float | None) -> None:
    """Scale-to-zero needs a signal that exists with no replica running: the queue."""
    if low == 0 and queue_target is None:
        raise ValueError("0 needs a queue_depth_per_replica target to wake on")


def check_networks(cidrs: Iterable[str]) -> None:
    for cidr in cidrs:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ValueError(f"{cidr!r} is not an IP network like 10.0.0.0/8") from None


class InvalidValues(ValueError):
    """Every problem found in the values of one runtime object, each `key: message`."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class Problems:
    """Collects the problems of one object's values, so all of them are reported at once."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def check(self, key: str, check: Callable[..., T], *args: Any) -> T | None:
        """`check(*args)`, or None with its problem noted under `key`."""
        try:
            return check(*args)
        except ValueError as exc:
            self.found.append(f"{key}: {exc}")
            return None

    def raise_any(self) -> None:
        if self.found:
            raise InvalidValues(self.found)
