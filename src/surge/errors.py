"""Every error Surge raises, grouped by cause. Each names its entry in the one table of problems
(`surge.observe.problem`): the HTTP status it maps to, its problem+json `type` and title, so an
adapter edge can translate it without knowing the cause.

Nothing here does I/O; `document()` builds the problem+json bytes an edge sends.
"""

from __future__ import annotations

from surge.masking import mask_credentials
from surge.observe import problem as p
from surge.observe.problem import Problem, problem_document


class SurgeError(Exception):
    """Base of all Surge errors. `problem` may be given per instance: an error read back from
    another process's answer (`admin.client.raise_for_problem`) keeps that answer's problem."""

    problem: Problem = p.INTERNAL

    def __init__(self, *args: object, problem: Problem | None = None) -> None:
        # A message may quote a store's or broker's URL: its password goes no further.
        super().__init__(*(mask_credentials(a) if isinstance(a, str) else a for a in args))
        if problem is not None:
            self.problem = problem

    def document(self, detail: str | None = None, **extra: object) -> bytes:
        """The problem+json body: `detail` defaults to the message."""
        return problem_document(self.problem, detail or str(self) or None, **extra)


# -- configuration ---------------------------------------------------------------------------


class ConfigError(SurgeError):
    """A configuration that cannot be used; `problems` lists each one with its location."""

    problem = p.INVALID_CONFIG

    def __init__(self, problems: list[str]) -> None:
        self.problems = [mask_credentials(problem) for problem in problems]
        super().__init__("\n".join(self.problems))


class UnitError(ValueError):
    """A duration, size or rate string that does not parse. A ValueError so pydantic
    validators turn it into a located problem."""


# -- client side (bad requests) --------------------------------------------------------------


class ClientError(SurgeError):
    problem = p.BAD_REQUEST


class BadPath(ClientError):
    """A request path that has no one reading: it climbs above the root, holds a malformed or
    refused percent-escape (`routing.paths`)."""

    problem = p.INVALID_PATH


class HeaderTooLarge(ClientError):
    problem = p.HEADER_TOO_LARGE


class BodyTooLarge(ClientError):
    problem = p.BODY_TOO_LARGE


class NotFound(ClientError):
    """An admin API resource (service, upstream, job) or path that does not exist. Not the
    data path's `no-route`: a client of the gateway and of the admin API can tell them apart."""

    problem = p.NOT_FOUND


class Unauthorized(ClientError):
    problem = p.UNAUTHORIZED


class RateLimited(ClientError):
    problem = p.RATE_LIMITED


# -- shared state, brokers -------------------------------------------------------------------


class StoreError(SurgeError):
    """The shared state store (Redis, SQLite) could not answer."""

    problem = p.STORE_UNAVAILABLE


class BrokerError(SurgeError):
    """The jobs broker could not answer."""

    problem = p.BROKER_UNAVAILABLE


class JobError(SurgeError):
    """A job that cannot be enqueued as asked (unserialisable arguments, unknown queue)."""

    problem = p.INVALID_JOB


class IllegalTransition(SurgeError):
    """A lifecycle state machine was asked for a move it does not allow."""

    problem = p.ILLEGAL_TRANSITION
