"""A service at run time: its upstreams with their pools, the balancer over the eligible ones,
health verdicts and passive outlier ejections. The data path calls `balancer.pick`, `record`,
`sticky_pick` and `hash_key`; everything that changes the eligible set (health, ejection,
drain, add) goes through `refresh`, which hands the balancer a new list."""

from __future__ import annotations

import logging
import random
from http.cookies import CookieError, SimpleCookie
from typing import Any

from surge.config.models_services import Service
from surge.errors import ClientError, NotFound
from surge.upstreams.balancers import make_balancer
from surge.upstreams.health import Check, HealthState, change_note
from surge.upstreams.outlier import OutlierDetector
from surge.upstreams.pool import Pool
from surge.upstreams.retry import RetryBudget
from surge.upstreams.upstream import Upstream

log = logging.getLogger("surge.upstreams")


class ServiceRuntime:
    """`spec` is the service's validated config model; a reload hands `configure` a new one."""

    def __init__(self, name: str, spec: Service, connect_timeout: float,
                 rng: random.Random | None = None) -> None:
        self.name = name
        self.connect_timeout = connect_timeout
        self.rng = rng or random.Random()
        self.upstreams: dict[str, Upstream] = {}
        self.by_id: dict[str, Upstream] = {}
        self.health: dict[Upstream, HealthState] = {}
        self.pending = 0
        self.requests = 0  # running total of first tries (the retry budget's denominator)
        self.retries = 0
        self.hedges = 0       # second copies sent by hedged routes
        self.hedge_wins = 0   # ... that answered first
        self.panic = False
        self.eligible: list[Upstream] = []
        self._seen_ewma: dict[Upstream, float] = {}
        self.ejections = 0
        self.health_changes = 0
        self.checks_excused = 0  # timed-out checks of serving upstreams (see health.py)
        self.spec = spec
        self.budget = _budget(spec)
        self.outlier = _outlier(spec)
        self.configure(spec)

    def configure(self, spec: Service) -> None:
        """Take a (new) service spec; the upstream set is reconciled by the caller. The retry
        budget and the outlier detector start over only when their settings changed."""
        if (spec.retry.budget_percent, spec.retry.min_per_second) != (
                self.spec.retry.budget_percent, self.spec.retry.min_per_second):
            self.budget = _budget(spec)
        if spec.outlier != self.spec.outlier:
            self.outlier = _outlier(spec)
            self.outlier.update(list(self.upstreams.values()))
        self.spec = spec
        self.balancer = make_balancer(spec.balance, self.rng)
        self.hashing = spec.balance == "hash"
        kind, _, arg = spec.hash_on.partition(":")
        self.hash_kind, self.hash_arg = kind, arg
        self.sticky_cookie = spec.sticky_cookie.encode() if spec.sticky_cookie else None
        self.retry_attempts = spec.retry.attempts
        self.retry_backoff = spec.retry.backoff
        for up in self.upstreams.values():
            up.pool.max_connections = spec.max_connections
            up.slow_start = spec.slow_start
        self.refresh()

    # -- membership (control side) ---------------------------------------------------------------

    def add(self, address: str, weight: int, now: float) -> Upstream:
        if address in self.upstreams and not self.upstreams[address].draining:
            raise ClientError(f"service '{self.name}' already has upstream {address}")
        health = self.spec.health
        up = Upstream(address, weight, added_at=now, slow_start=self.spec.slow_start,
                      healthy=health is None)
        known = [u.ewma for u in self.upstreams.values() if u.eligible]
        if known:
            # Start from what the others show, not an optimistic guess that would send the
            # newcomer every request until its own numbers catch up.
            up.ewma = sum(known) / len(known)
        up.pool = Pool(up, self)
        old = self.upstreams.get(address)
        if old is not None:
            self.remove(old)
        self.upstreams[address] = up
        self.by_id[up.id] = up
        if health is not None:
            self.health[up] = HealthState(health.rise, health.fall)
        self.outlier.update(list(self.upstreams.values()))
        self.refresh()
        return up

    def drain(self, address: str) -> Upstream:
        up = self.upstreams.get(address)
        if up is None:
            raise NotFound(f"service '{self.name}' has no upstream {address}")
        up.draining = True
        self.refresh()
        return up

    def remove(self, up: Upstream) -> None:
        """Forget a drained upstream (its in-flight requests keep their references)."""
        if self.upstreams.get(up.address) is up:
            del self.upstreams[up.address]
        self.by_id.pop(up.id, None)
        self.health.pop(up, None)
        self.outlier.update(list(self.upstreams.values()))
        up.pool.close()

    def drained(self) -> list[Upstream]:
        return [u for u in self.upstreams.values() if u.draining and u.inflight == 0]

    def refresh(self) -> None:
        """Recompute who may get traffic, entering or leaving panic mode (Envoy's): when fewer
        than `panic_threshold` percent of the upstreams are healthy, but some are, traffic
        spreads over all of them rather than crushing the few healthy ones."""
        live = [u for u in self.upstreams.values() if not u.draining]
        healthy = sum(1 for u in live if u.healthy and not u.ejected)
        threshold = self.spec.panic_threshold
        panic = bool(threshold and healthy and healthy * 100 < threshold * len(live))
        if panic != self.panic:
            self.panic = panic
            log.warning("service %s: %s panic mode (%d of %d upstreams healthy)", self.name,
                        "entering" if panic else "leaving", healthy, len(live))
        for up in live:
            up.panic = panic
        self.eligible = [u for u in self.upstreams.values() if u.eligible]
        self.balancer.update(self.eligible)

    def decay_stale_latency(self) -> None:
        """About once a second: an upstream whose latency average did not move since the last
        call got no answered requests, so its estimate is stale. Halve its excess over the
        best one, so a replica that was slow once is tried again instead of starving (as
        Finagle's peak EWMA decays an idle host's cost)."""
        eligible = self.eligible
        if len(eligible) < 2:
            return
        best = min(u.ewma for u in eligible)
        seen = self._seen_ewma
        for up in eligible:
            if seen.get(up) == up.ewma and up.ewma > best:
                up.ewma = best + (up.ewma - best) / 2
            seen[up] = up.ewma
        if len(seen) > 2 * len(self.upstreams):
            self._seen_ewma = {u: seen[u] for u in eligible}

    def has_alternative(self, tried: tuple[Upstream, ...]) -> bool:
        """Some eligible upstream this request has not tried yet."""
        return any(u not in tried for u in self.eligible)

    # -- verdicts --------------------------------------------------------------------------------

    def record(self, up: Upstream, ok: bool, now: float) -> None:
        """One live request's outcome (passive outlier detection)."""
        if ok and not up.failures:
            return  # the common case costs nothing
        up.failures = 0 if ok else up.failures + 1
        verdict = self.outlier.record(up, ok, now)
        if verdict is not None and not up.ejected:
            up.ejected = True
            self.ejections += 1
            log.warning("service %s: upstream %s ejected for %.0fs after %d failures",
                        self.name, up.address, verdict.seconds, up.failures)
            self.refresh()

    def health_result(self, up: Upstream, result: Check, now: float, reason: str = "") -> None:
        """One active check's result (`reason`: what a failed check found, for the log). A
        timeout is excused while `up` answered live requests within the last interval and
        timeout (`now`: the gateway's clock, the one `answered_at` is stamped with)."""
        state = self.health.get(up)
        spec = self.spec.health
        if state is None or spec is None:
            return
        serving = now - up.answered_at <= spec.interval + spec.timeout
        excused = state.excused
        before = state.state
        flipped = state.record(result, serving)
        self.checks_excused += state.excused - excused
        note = change_note(before, state.state, reason, state.rise, state.fall)
        if note is not None:
            log.log(note[0], "service %s: upstream %s %s", self.name, up.address, note[1])
        if flipped:
            up.healthy = state.healthy
            self.health_changes += 1
            self.refresh()

    def return_ejected(self, up: Upstream) -> None:
        if up.ejected:
            up.ejected = False
            up.failures = 0
            self.outlier.restore(up)
            log.info("service %s: upstream %s returns from ejection", self.name, up.address)
            self.refresh()

    # -- data path helpers -----------------------------------------------------------------------

    def sticky_pick(self, cookie: bytes | None) -> Upstream | None:
        if cookie is None or self.sticky_cookie is None:
            return None
        name = self.sticky_cookie.decode()
        try:
            jar = SimpleCookie(cookie.decode("latin-1"))
        except CookieError:
            return None
        morsel = jar.get(name)
        up = self.by_id.get(morsel.value) if morsel is not None else None
        return up if up is not None and up.eligible else None

    def hash_key(self, ip: bytes, path: str, headers: list[tuple[bytes, bytes]],
                 cookie: bytes | None) -> str | None:
        """What `balance: hash` hashes, from one request's client address, normal path,
        headers and Cookie header."""
        kind = self.hash_kind
        if kind == "ip":
            return ip.decode()
        if kind == "path":
            return path  # normalised: two spellings of one path go to one upstream
        wanted = self.hash_arg.lower().encode()
        if kind == "header":
            for name, value in headers:
                if name.lower() == wanted:
                    return value.decode("latin-1")
            return None
        if kind == "cookie" and cookie is not None:
            try:
                morsel = SimpleCookie(cookie.decode("latin-1")).get(self.hash_arg)
            except CookieError:
                return None
            return morsel.value if morsel is not None else None
        return None

    def view(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "balance": self.spec.balance,
            "pending": self.pending,
            "panic": self.panic,
            "upstreams": [
                {"address": u.address, "weight": u.weight, "healthy": u.healthy,
                 "ejected": u.ejected, "draining": u.draining, "inflight": u.inflight,
                 "pool": {"open": len(u.pool.conns), "idle": len(u.pool.idle)}}
                for u in self.upstreams.values()
            ],
        }


def _budget(spec: Service) -> RetryBudget:
    return RetryBudget(spec.retry.budget_percent, spec.retry.min_per_second)


def _outlier(spec: Service) -> OutlierDetector:
    o = spec.outlier
    return OutlierDetector(o.consecutive_failures, o.ejection, o.max_ejected_percent)
