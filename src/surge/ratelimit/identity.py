"""Who a request counts against, and on which plan: its API key (on the key's plan), or
else `rate_limits.key` (`ip`: the client address, believing `X-Forwarded-For` only from
trusted proxies; or `header:NAME`) on the default plan. An API key that is present but
invalid or revoked is a 401, never anonymous access. Pure apart from the registry lookup,
which is in-memory.

In the gateway, this is the fallback: a caller an earlier policy identified (an auth policy's
JWT subject) is counted as that policy said, and when a route's auth policy claims the
`Authorization` header, a `Bearer` token there is never read as an API key
(`gateway/ratelimit.py`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

from surge.errors import Unauthorized
from surge.ratelimit.keys import KeyInfo, extract_api_key
from surge.ratelimit.registry import KeyRegistry
from surge.ratelimit.settings import RateLimitSettings

HeaderGet = Callable[[str], "str | None"]


class TrustedProxies:
    """The networks whose `X-Forwarded-For` entries are believed."""

    def __init__(self, cidrs: Iterable[str] = ()) -> None:
        self.networks = [ipaddress.ip_network(c, strict=False) for c in cidrs]

    def __contains__(self, address: str) -> bool:
        if not self.networks:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.networks)


def client_address(peer: str, forwarded_for: str | None, trusted: TrustedProxies) -> str:
    """The peer, unless it is a trusted proxy: then the right-most untrusted hop of
    `X-Forwarded-For` (hops left of it could be forged by the client)."""
    if not forwarded_for or peer not in trusted:
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if hop not in trusted:
            return hop
    return hops[0] if hops else peer


class Identifier:
    """Maps a request's headers and peer address to (identity, plan); the plan is the key's
    own, or None for a request without a key (the caller picks the route's or default plan)."""

    def __init__(self, settings: RateLimitSettings, registry: KeyRegistry | None = None) -> None:
        self.registry = registry
        self.header = settings.key.removeprefix("header:").lower() if settings.key != "ip" else None
        self.trusted = TrustedProxies(settings.trusted_proxies)

    def identify(self, get: HeaderGet, peer: str) -> tuple[str, str | None]:
        """`get` looks a header up by lower-case name. Raises Unauthorized for a bad key."""
        info = self.key(get)
        if info is not None:
            return "key:" + info.id, info.plan
        return self.anonymous(get, peer), None

    def key(self, get: HeaderGet) -> KeyInfo | None:
        """The API key the request carries, None without one; Unauthorized for a bad one."""
        raw = extract_api_key(get)
        if raw is None:
            return None
        info = self.registry.lookup(raw) if self.registry is not None else None
        if info is None:
            raise Unauthorized("invalid or revoked API key")
        return info

    def anonymous(self, get: HeaderGet, peer: str) -> str:
        """Who a request without an API key counts as: `rate_limits.key`."""
        if self.header is not None:
            value = get(self.header)
            if value:
                return "header:" + value
        return "ip:" + client_address(peer, get("x-forwarded-for"), self.trusted)
