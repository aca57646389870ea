"""The route table: picks the route (and so the service) for one request. Pure and built once
per config snapshot; `match()` runs per request, so the work is done in `RouteTable.__init__`.

Rules, in order:
1. Longest matching prefix wins. A prefix is a plain string prefix of the path, nginx-style:
   `/api/` matches `/api/x` but not `/api`; `/api` matches `/api`, `/api/x` and also `/apix`.
   End a prefix with `/` to match whole path segments only.
2. Among routes with the same prefix: one with a `version` beats one without, then one with
   a `host`, then one with `methods`, then one with `headers`; remaining ties go to the first
   in the config.
3. A route whose host, methods or headers do not fit is skipped and the search goes on, to the
   same prefix's next route and then to shorter prefixes.
4. A route that fits but for its `version` ends the search when no route of its prefix fits:
   the request asked that prefix for a version it does not serve. `match` then returns the
   prefix's *version miss*, a route whose `known_versions` lists the versions served there
   (the gateway answers 400 naming them) rather than falling back to a shorter prefix.
Hosts compare case-insensitively without the port; methods exactly (HTTP methods are
case-sensitive; configured ones are upper-cased); header names in lower case, values exactly.
`path` is the request target's path, without the query string."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Protocol

from surge.config.checks import check_absolute

_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


def normalize_host(host: str) -> str:
    """`Example.COM:8080` -> `example.com`; `[::1]:8080` -> `[::1]`; a trailing dot dropped."""
    if host.startswith("["):
        host = host[: host.find("]") + 1] or host
    else:
        host = host.partition(":")[0]
    return host.rstrip(".").lower()


class CompiledRoute:
    """One compiled route. `source` is the config object it was built from (attributes this
    class does not define, such as `rate_limit`, are read through to it); `extra` is free for
    the gateway to hang per-route data on (its policy chain, the service object)."""

    __slots__ = (
        "prefix", "host", "methods", "headers", "service", "strip_prefix", "source", "extra",
        "plain", "version", "known_versions",
    )

    def __init__(self, source: Any, known_versions: tuple[str, ...] | None = None) -> None:
        self.prefix: str = check_absolute(source.prefix)
        self.host: str | None = normalize_host(source.host) if source.host else None
        self.methods: frozenset[str] | None = (
            frozenset(m.upper() for m in source.methods) if source.methods else None
        )
        headers = source.headers or {}
        self.headers: tuple[tuple[str, str], ...] = tuple(
            (name.lower(), value) for name, value in headers.items()
        )
        self.service: str = source.service
        self.strip_prefix: bool = bool(source.strip_prefix)
        self.source = source
        self.extra: dict[str, Any] = {}
        self.version: str | None = getattr(source, "version", None)
        # Set only on a prefix's version miss (rule 4): the versions its routes serve.
        self.known_versions = known_versions
        # No condition beyond the prefix: the prefix match alone decides.
        self.plain = (self.host is None and self.methods is None and not self.headers
                      and self.version is None)

    def specificity(self) -> tuple[bool, bool, bool, bool]:
        """Sorts ascending from most to least specific among routes of one prefix."""
        return (self.version is None, self.host is None, self.methods is None,
                not self.headers)

    def __getattr__(self, name: str) -> Any:
        if name == "source":  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.source, name)

    def __repr__(self) -> str:
        return f"<CompiledRoute {self.prefix} -> {self.service}>"


# (prefix, its routes from most to least specific, its version miss or None), longest prefix
# first.
_Groups = list[tuple[str, list[CompiledRoute], CompiledRoute | None]]


def _grouped(routes: Iterable[CompiledRoute]) -> _Groups:
    by_prefix: dict[str, list[CompiledRoute]] = {}
    for route in routes:
        by_prefix.setdefault(route.prefix, []).append(route)
    groups: _Groups = []
    for prefix, group in sorted(by_prefix.items(), key=lambda item: -len(item[0])):
        group.sort(key=CompiledRoute.specificity)  # stable: config order breaks ties
        versions = sorted({r.version for r in group if r.version is not None})
        miss = CompiledRoute(group[0].source, tuple(versions)) if versions else None
        groups.append((prefix, group, miss))
    return groups


def _first_segment(prefix: str) -> str | None:
    """`/api/v1` -> `api`; None when the prefix ends inside its first segment (`/api`, `/`)."""
    end = prefix.find("/", 1)
    return prefix[1:end] if end > 0 else None


def _first_fit(
    groups: _Groups, method: str, path: str, host: str | None, headers: Mapping[str, str],
    version: str | None,
) -> CompiledRoute | None:
    for prefix, routes, miss in groups:
        if not path.startswith(prefix):
            continue
        missed = False
        for route in routes:
            if route.plain:
                return route
            if route.host is not None and route.host != host:
                continue
            if route.methods is not None and method not in route.methods:
                continue
            for name, value in route.headers:
                if headers.get(name) != value:
                    break
            else:
                if route.version is None or route.version == version:
                    return route
                missed = True
        if missed:
            return miss
    return None


class RouteTable:
    """Routes indexed by their prefix's first path segment, so a request only tests the
    prefixes that can match it. Prefixes that end inside their first segment (`/`, `/api`) are
    shorter than any segment-indexed one that matches the same path, so they are tried last."""

    __slots__ = ("routes", "_by_segment", "_unsegmented", "_uses_host")

    def __init__(self, routes: Iterable[Any]) -> None:
        self.routes: tuple[CompiledRoute, ...] = tuple(CompiledRoute(r) for r in routes)
        by_segment: dict[str, list[CompiledRoute]] = {}
        unsegmented: list[CompiledRoute] = []
        for route in self.routes:
            segment = _first_segment(route.prefix)
            if segment is None:
                unsegmented.append(route)
            else:
                by_segment.setdefault(segment, []).append(route)
        self._by_segment = {segment: _grouped(group) for segment, group in by_segment.items()}
        self._unsegmented = _grouped(unsegmented)
        self._uses_host = any(route.host is not None for route in self.routes)

    def match(
        self, method: str, path: str, host: str | None = None,
        headers: Mapping[str, str] = _NO_HEADERS, version: str | None = None,
    ) -> CompiledRoute | None:
        """The route for this request, or None (a 404), or a prefix's version miss (its
        `known_versions` set: rule 4). `headers` has lower-case names; `version` is the one
        the request asked for, if any."""
        if host is not None and self._uses_host:
            host = normalize_host(host)
        end = path.find("/", 1)
        if end > 0:
            groups = self._by_segment.get(path[1:end])
            if groups is not None:
                route = _first_fit(groups, method, path, host, headers, version)
                if route is not None:
                    return route
        return _first_fit(self._unsegmented, method, path, host, headers, version)

    def __len__(self) -> int:
        return len(self.routes)


class Prefixed(Protocol):
    """What `strip` reads: a `CompiledRoute`, or the gateway's runtime view of one."""

    prefix: str
    strip_prefix: bool


def strip(path: str, route: Prefixed) -> str:
    """The path to send upstream: without the route's prefix when it has `strip_prefix`, and
    always starting with `/` (`/api/x` under `/api/` -> `/x`; `/api` under `/api` -> `/`)."""
    if not route.strip_prefix:
        return path
    rest = path[len(route.prefix):]
    return rest if rest.startswith("/") else "/" + rest
