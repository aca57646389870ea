"""The per-request policy chain: the steps a route runs around the proxy (CORS, auth, rate
limit, cache, ...), what they may answer, and the identity slot they share. A route without
policies pays nothing: the exchange checks one tuple, and one int on the way back.

The stages run in one fixed order, whatever the order of the keys in surge.yaml (`STAGES`);
the proxy is last. Before-hooks run in that order, after-hooks in reverse, and only for the
policies whose `before` let the request go on (an onion, as dramatiq's middleware): a policy
that answers itself does not see its own answer, the ones before it do.

`before(exchange)` returns None to let the request go on, an `Answer` (a problem+json error)
or a `Reply` (any other answer: a cached response, a 204 preflight, a token) to answer it at
the gateway, or an awaitable of one of them when it must ask a remote store. Until the last
`before` has run, the upstream request head is not built: a policy may change
`exchange.headers` (`set_request_header`), `exchange.upstream_target`, and the service
(`use_service`). `after(exchange, status, block)` sees every response head before it goes out
(the upstream's, or an answer given at the gateway by a later policy) and may add lines to
`exchange.extra_headers`; to see the body too it hands the exchange a `BodyWatcher`.

Written as native classes (compiled with mypyc): a Protocol would be called by name."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from mypy_extensions import mypyc_attr

if TYPE_CHECKING:
    from surge.gateway.exchange import Exchange
    from surge.observe.problem import Problem

# The chain's fixed order; `chain()` builds a route's policies in it. The proxy step is last.
STAGES: Final = ("cors", "auth", "rate_limit", "deprecation", "cache")


@dataclass(frozen=True, slots=True)
class Answer:
    """A problem+json answer given at the gateway instead of proxying (an error)."""

    problem: Problem                 # an entry of the table in `surge.observe.problem`
    detail: str
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Reply:
    """A whole answer given at the gateway that is not an error: its status, end-to-end
    headers and body (Content-Length, X-Request-ID and the framing are the gateway's)."""

    status: int
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""


Verdict = Answer | Reply | None


class Identity:
    """Who the caller is, set on the exchange by whichever policy found out (an API key, a
    JWT's subject) and read by the later ones: rate limiting counts `key` on `plan`."""

    __slots__ = ("key", "subject", "plan")

    def __init__(self, key: str, subject: str, plan: str | None = None) -> None:
        self.key = key          # what the caller is counted and logged as, e.g. `key:key_1a2b`
        self.subject = subject  # who it is in its own terms: the key's name, the JWT's `sub`
        self.plan = plan        # the caller's plan; None: the route's

    def __repr__(self) -> str:
        return f"<Identity {self.key} plan={self.plan}>"


@mypyc_attr(allow_interpreted_subclasses=True)
class BodyWatcher:
    """Sees one response's body on its way to the client (the cache filling an entry). An
    after-hook hands one to `exchange.watch`; `end` is called only when the body is complete,
    so a response cut off is never taken for a whole one. Per request: it holds the state."""

    def body(self, data: bytes) -> None:
        """A piece of the body, as the client gets it, unframed."""

    def end(self) -> None:
        """The body is complete."""


@mypyc_attr(allow_interpreted_subclasses=True)
class RoutePolicy:
    """Base class: every hook is a no-op."""

    def claims(self) -> frozenset[bytes]:
        """The request headers this policy consumes (lower-case), which later stages leave
        alone: an auth policy reading JWTs from `Authorization` claims it, and rate limiting
        then takes no `Bearer` token there for an API key. (A method, not a class attribute:
        compiled code would not see an uncompiled subclass's attribute.)"""
        return frozenset()

    def before(self, exchange: Exchange) -> Verdict | Awaitable[Verdict]:
        return None

    def after(self, exchange: Exchange, status: int, block: bytes) -> None:
        """The response head is about to go out; `block` is its end-to-end header lines, each
        preceded by CRLF. `exchange.answered_here` says whether the gateway answered."""


# Builds one stage's policy for a route (its `routes[*]` spec), or None when the route does
# not use that stage; it sees the policies of the earlier stages (what they claim).
PolicySource = Callable[[Any, tuple[RoutePolicy, ...]], "RoutePolicy | None"]


def chain(spec: Any, sources: Mapping[str, PolicySource]) -> tuple[RoutePolicy, ...]:
    """The policies of one route, in the order of `STAGES`; built once per snapshot."""
    unknown = set(sources) - set(STAGES)
    if unknown:
        raise ValueError(f"no policy stage named {', '.join(sorted(unknown))}")
    policies: tuple[RoutePolicy, ...] = ()
    for stage in STAGES:
        source = sources.get(stage)
        policy = source(spec, policies) if source is not None else None
        if policy is not None:
            policies += (policy,)
    return policies


def claimed(policies: tuple[RoutePolicy, ...]) -> frozenset[bytes]:
    """The request headers these policies consume."""
    return frozenset().union(*(p.claims() for p in policies))
