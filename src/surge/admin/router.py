"""The admin API's route table: a method and a path pattern with `{name}` segments map to a
handler. Any feature adds its routes with one call, `router.add("GET", "/api/x/{id}", fn)`.

Pure: matching returns a `Match` (the handler, its decoded parameters, the methods the path
allows) and the server turns a miss into 404 or 405. No I/O, no error rendering here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import unquote

from surge.admin.http import Request, Response

# A handler may be a coroutine function or a plain function.
Handler = Callable[[Request], Awaitable[Response] | Response]


@dataclass(frozen=True)
class Endpoint:
    method: str
    pattern: str
    handler: Handler
    # Each segment is ("literal", text) or ("param", name).
    segments: tuple[tuple[str, str], ...]

    @property
    def literals(self) -> int:
        return sum(kind == "literal" for kind, _ in self.segments)

    def match(self, parts: list[str]) -> dict[str, str] | None:
        if len(parts) != len(self.segments):
            return None
        params: dict[str, str] = {}
        for (kind, text), part in zip(self.segments, parts, strict=True):
            if kind == "param":
                if not part:
                    return None
                params[text] = part
            elif part != text:
                return None
        return params


@dataclass(frozen=True)
class Match:
    handler: Handler | None  # None: no route for this method (see `allowed`) or none at all
    params: dict[str, str]
    allowed: tuple[str, ...]  # methods the path accepts; empty when no pattern matches it


class Router:
    def __init__(self) -> None:
        self._routes: list[Endpoint] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        """Register `handler` for `method` on `pattern`, e.g. "/api/services/{name}".
        A GET route answers HEAD too. Raises ValueError on a malformed or duplicate pattern."""
        method = method.upper()
        segments = _compile(pattern)
        for route in self._routes:
            if route.method == method and route.segments == segments:
                raise ValueError(f"route {method} {pattern} is already registered")
        self._routes.append(Endpoint(method, pattern, handler, segments))

    def routes(self) -> list[tuple[str, str]]:
        """(method, pattern) of every route, in registration order."""
        return [(route.method, route.pattern) for route in self._routes]

    def resolve(self, method: str, path: str) -> Match:
        """The route for `method` on the percent-encoded `path`. When several patterns match,
        the one with the most literal segments wins (`/api/jobs/queues` over `/api/jobs/{id}`)."""
        parts = [unquote(part) for part in path.split("/")[1:]]
        wanted = "GET" if method == "HEAD" else method
        best: tuple[Endpoint, dict[str, str]] | None = None
        allowed: list[str] = []
        for route in self._routes:
            params = route.match(parts)
            if params is None:
                continue
            allowed.append(route.method)
            if route.method == wanted and (best is None or route.literals > best[0].literals):
                best = (route, params)
        if "GET" in allowed:
            allowed.append("HEAD")
        allowed_methods = tuple(sorted(set(allowed)))
        if best is None:
            return Match(None, {}, allowed_methods)
        return Match(best[0].handler, best[1], allowed_methods)


def _compile(pattern: str) -> tuple[tuple[str, str], ...]:
    if not pattern.startswith("/"):
        raise ValueError(f"route pattern {pattern!r} must start with '/'")
    segments: list[tuple[str, str]] = []
    for part in pattern.split("/")[1:]:
        if part.startswith("{") and part.endswith("}"):
            name = part[1:-1]
            if not name.isidentifier() or ("param", name) in segments:
                raise ValueError(f"route pattern {pattern!r}: bad or repeated name {part}")
            segments.append(("param", name))
        elif "{" in part or "}" in part:
            raise ValueError(f"route pattern {pattern!r}: a parameter must fill a whole segment")
        else:
            segments.append(("literal", part))
    return tuple(segments)
