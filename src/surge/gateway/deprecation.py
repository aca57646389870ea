"""Deprecated routes (`routes[].deprecated`): every response carries `Deprecation` (RFC 9745,
from `since`), `Sunset` (RFC 8594) and `Link: <...>; rel="sunset"`, and the callers still
using the route are counted per API key, so an operator knows whom to tell before the sunset.

A policy on the `deprecation` stage, after authentication and rate limiting (the caller is
known by then: `exchange.identity`, or `anonymous`) and before the cache (a cached answer
gets the headers too). The headers are made once per snapshot; the count is a dict add.
Counts are each gateway process's own; under `workers: N` the master's `/metrics` shows each
worker's samples, labelled `worker`."""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from datetime import date
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, Final

from prometheus_client.core import CounterMetricFamily, Metric

from surge.gateway.policy import RoutePolicy, Verdict

if TYPE_CHECKING:
    from surge.config.models import RouteDeprecation
    from surge.gateway.exchange import Exchange

# Distinct callers counted per route; the rest are counted together as `other`, so a flood of
# new keys (or JWT subjects) cannot grow the metric without bound.
MAX_CALLERS: Final = 1000


def _epoch(day: date) -> int:
    return calendar.timegm(day.timetuple())


def deprecation_headers(spec: RouteDeprecation) -> bytes:
    """The header lines (each ending in CRLF) every response of a deprecated route carries."""
    lines = b"Deprecation: @%d\r\n" % _epoch(spec.since)
    if spec.sunset is not None:
        lines += b"Sunset: %s\r\n" % formatdate(_epoch(spec.sunset), usegmt=True).encode()
    if spec.link is not None:
        lines += b'Link: <%s>; rel="sunset"\r\n' % spec.link.encode("latin-1")
    return lines


class DeprecatedCallers:
    """Requests to deprecated routes, per route label and caller."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[str, int]] = {}

    def count(self, route: str, caller: str) -> None:
        callers = self.counts.get(route)
        if callers is None:
            callers = self.counts[route] = {}
        if caller not in callers and len(callers) >= MAX_CALLERS:
            caller = "other"
        callers[caller] = callers.get(caller, 0) + 1

    def policy(self, route: Any, earlier: tuple[RoutePolicy, ...]) -> RoutePolicy | None:
        """The policy source of the `deprecation` stage."""
        spec = route.deprecated
        if spec is None:
            return None
        return DeprecationPolicy((route.host or "") + route.prefix, spec, self)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "surge_deprecated_requests", "Requests to deprecated routes, by caller (the API "
            "key or JWT subject; anonymous without one)", labels=["route", "caller"])
        for route, callers in self.counts.items():
            for caller, n in callers.items():
                family.add_metric([route, caller], n)
        yield family


class DeprecationPolicy(RoutePolicy):
    def __init__(self, label: str, spec: RouteDeprecation, callers: DeprecatedCallers) -> None:
        self.label = label
        self.headers = deprecation_headers(spec)
        self.callers = callers

    def before(self, exchange: Exchange) -> Verdict:
        identity = exchange.identity
        self.callers.count(self.label, identity.key if identity is not None else "anonymous")
        return None

    def after(self, exchange: Exchange, status: int, block: bytes) -> None:
        exchange.extra_headers += self.headers
