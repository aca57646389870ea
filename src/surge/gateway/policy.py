"""The per-request policy chain: steps a route runs before its request is proxied (auth, rate
limit, cache, ...). A route without policies pays nothing: the exchange checks one tuple.

A policy's `before(exchange)` returns None to let the request go on, an `Answer` to answer
it at the gateway, or an awaitable of either when it must ask a remote store. Headers a
policy wants on the response (e.g. `RateLimit`) go into `exchange.extra_headers`."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from surge.gateway.exchange import Exchange
    from surge.observe.problem import Problem


@dataclass(frozen=True, slots=True)
class Answer:
    """A problem+json answer given at the gateway instead of proxying."""

    problem: Problem                 # an entry of the table in `surge.observe.problem`
    detail: str
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


Verdict = Answer | None


class RoutePolicy:
    """Base class: every hook is a no-op."""

    def before(self, exchange: Exchange) -> Verdict | Awaitable[Verdict]:
        return None
