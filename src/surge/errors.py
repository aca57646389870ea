"""Every error Surge raises, grouped by cause. Each carries the HTTP status it maps to and a
problem+json `type` slug, so an adapter edge can translate it without knowing the cause.

Nothing here does I/O; rendering a problem document lives in `surge.observe.problem`.
"""

from __future__ import annotations

from surge.masking import mask_credentials


class SurgeError(Exception):
    """Base of all Surge errors."""

    status: int = 500
    type: str = "internal"
    title: str = "Internal error"

    def __init__(self, *args: object) -> None:
        # A message may quote a store's or broker's URL: its password goes no further.
        super().__init__(*(mask_credentials(a) if isinstance(a, str) else a for a in args))


# -- configuration ---------------------------------------------------------------------------


class ConfigError(SurgeError):
    """A configuration that cannot be used; `problems` lists each one with its location."""

    status = 400
    type = "invalid-config"
    title = "Invalid configuration"

    def __init__(self, problems: list[str]) -> None:
        self.problems = [mask_credentials(problem) for problem in problems]
        super().__init__("\n".join(self.problems))


class UnitError(ValueError):
    """A duration, size or rate string that does not parse. A ValueError so pydantic
    validators turn it into a located problem."""


# -- client side (bad requests) --------------------------------------------------------------


class ClientError(SurgeError):
    status = 400
    type = "bad-request"
    title = "Bad request"


class BadPath(ClientError):
    """A request path that has no one reading: it climbs above the root, holds a malformed or
    refused percent-escape (`routing.paths`)."""


class HeaderTooLarge(ClientError):
    status = 431
    type = "header-too-large"
    title = "Request header fields too large"


class BodyTooLarge(ClientError):
    status = 413
    type = "body-too-large"
    title = "Content too large"


class NotFound(ClientError):
    status = 404
    type = "no-route"
    title = "Not found"


class Unauthorized(ClientError):
    status = 401
    type = "unauthorized"
    title = "Unauthorized"


class RateLimited(ClientError):
    status = 429
    type = "rate-limited"
    title = "Too many requests"


# -- upstream side (bad gateways) ------------------------------------------------------------


class UpstreamError(SurgeError):
    status = 502
    type = "bad-gateway"
    title = "Bad gateway"


class UpstreamTimeout(UpstreamError):
    status = 504
    type = "upstream-timeout"
    title = "Gateway timeout"


class NoHealthyUpstream(UpstreamError):
    status = 503
    type = "no-healthy-upstream"
    title = "Service unavailable"


class Overloaded(UpstreamError):
    status = 503
    type = "overloaded"
    title = "Service unavailable"


# -- shared state, brokers -------------------------------------------------------------------


class StoreError(SurgeError):
    """The shared state store (Redis, SQLite) could not answer."""

    status = 503
    type = "store-unavailable"
    title = "State store unavailable"


class BrokerError(SurgeError):
    """The jobs broker could not answer."""

    status = 503
    type = "broker-unavailable"
    title = "Job broker unavailable"


class JobError(SurgeError):
    """A job that cannot be enqueued as asked (unserialisable arguments, unknown queue)."""

    status = 400
    type = "invalid-job"
    title = "Invalid job"


class IllegalTransition(SurgeError):
    """A lifecycle state machine was asked for a move it does not allow."""

    type = "illegal-transition"
    title = "Illegal state transition"
