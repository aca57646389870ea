"""Rate limiting inside any ASGI app, on the same core, stores and plans as the gateway:
`RateLimitMiddleware` (every HTTP request) and the `rate_limit` decorator (one Starlette or
FastAPI endpoint, counted per endpoint). A rejected request gets 429 problem+json with
`Retry-After`; an invalid API key gets 401; every answer carries `RateLimit-Policy` and
`RateLimit`. With the `shaping` algorithm an admitted request is held for its delay first.

A decorated endpoint inside the middleware counts the caller the middleware identified (its
API key on the key's plan), so both see the same keys without the decorator being given the
registry again.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from surge.errors import RateLimited, Unauthorized
from surge.observe.problem import CONTENT_TYPE
from surge.ratelimit.algorithms import RateLimitDecision
from surge.ratelimit.identity import Identifier
from surge.ratelimit.limiter import Limiter
from surge.ratelimit.registry import KeyRegistry

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]
# A custom identity: from the ASGI scope to the identity string (plan: the default one)
IdentifyFn = Callable[[Scope], str]
# Where a guard that identifies callers leaves (identity, plan) in the ASGI scope, for the
# guards of decorated endpoints further in that have no registry or `identify` of their own
CALLER = "surge.ratelimit.caller"


class Guard:
    """What the middleware and the decorator share: identify, decide, build the answer."""

    def __init__(
        self,
        limiter: Limiter,
        *,
        registry: KeyRegistry | None = None,
        identify: IdentifyFn | None = None,
        plan: str | None = None,
        cost: int = 1,
    ) -> None:
        if cost < 0:
            raise ValueError(f"cost must be >= 0, got {cost}")
        limiter.plan(plan)  # an unknown plan fails here, at setup, not per request
        self.limiter = limiter
        self.identifier = Identifier(limiter.settings, registry)
        self.identify = identify
        self.defers = registry is None and identify is None
        self.plan = plan
        self.cost = cost

    async def check(self, scope: Scope, prefix: str = "") -> tuple[RateLimitDecision | None, Any]:
        """(decision, rejection): rejection is None when the request may proceed, else the
        (status, headers, body) to answer with."""
        try:
            identity, plan = self._who(scope)
        except Unauthorized as error:
            return None, (error.problem.status, [], error.document())
        if plan is not None and plan not in self.limiter.plans:
            plan = None  # the key's plan left the config: the endpoint's or default plan
        plan = plan or self.plan  # a key's own plan wins over the endpoint's
        decision = await self.limiter.hit(prefix + identity, plan, self.cost)
        headers = self.limiter.headers(decision, plan)
        if not decision.allowed:
            limited = RateLimited()
            detail = f"rate limit of plan '{plan or self.limiter.default_plan}' exceeded"
            return decision, (limited.problem.status, headers, limited.document(detail))
        if decision.delay:
            await asyncio.sleep(decision.delay)
        scope.setdefault("state", {})["ratelimit"] = decision
        return decision, headers

    def _who(self, scope: Scope) -> tuple[str, str | None]:
        caller: tuple[str, str | None] | None = scope.get(CALLER)
        if caller is not None and self.defers:
            return caller
        if self.identify is not None:
            caller = self.identify(scope), None
        else:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                       for k, v in scope.get("headers") or ()}
            client = scope.get("client")
            caller = self.identifier.identify(headers.get, client[0] if client else "unknown")
        scope[CALLER] = caller
        return caller


class RateLimitMiddleware:
    """Limits every HTTP request of `app`. Parameters as for `Guard`."""

    def __init__(self, app: ASGIApp, limiter: Limiter, **options: Any) -> None:
        self.app = app
        self.guard = Guard(limiter, **options)

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        decision, outcome = await self.guard.check(scope)
        if decision is None or not decision.allowed:
            await send_problem(send, *outcome)
            return
        extra = outcome

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                # an endpoint's own (decorator) limit is the more specific one: keep it
                if not any(name.lower() == b"ratelimit" for name, _ in headers):
                    message["headers"] = [*headers, *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def rate_limit(limiter: Limiter, **options: Any) -> Callable[[Callable], Callable]:
    """Decorate a Starlette endpoint `async def f(request)` or a FastAPI one that takes a
    `request: Request` parameter. The endpoint is counted on its own (its name prefixes
    the identity); a response object it returns gets the RateLimit headers. Inside
    `RateLimitMiddleware` it counts the caller the middleware identified, unless given a
    `registry` or `identify` of its own; outside it, API keys need `registry=`."""
    guard = Guard(limiter, **options)

    def decorate(endpoint: Callable) -> Callable:
        prefix = f"{endpoint.__module__}.{endpoint.__qualname__}:"

        @functools.wraps(endpoint)
        async def limited(*args: Any, **kwargs: Any) -> Any:
            from starlette.requests import Request
            from starlette.responses import Response

            request = next((a for a in (*args, *kwargs.values()) if isinstance(a, Request)), None)
            if request is None:
                raise TypeError(f"{endpoint.__qualname__} needs a `request: Request` parameter")
            decision, outcome = await guard.check(request.scope, prefix)
            if decision is None or not decision.allowed:
                status, headers, body = outcome
                return Response(body, status, _str_headers(headers), CONTENT_TYPE.decode())
            result = await endpoint(*args, **kwargs)
            if isinstance(result, Response):
                for name, value in outcome:
                    result.headers[name.decode()] = value.decode()
            return result

        return limited

    return decorate


async def send_problem(
    send: Callable, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", CONTENT_TYPE), (b"content-length", b"%d" % len(body)),
                    *headers],
    })
    await send({"type": "http.response.body", "body": body})


def _str_headers(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {name.decode(): value.decode() for name, value in headers}

