"""The rate limiting algorithms, pure: a policy is built once from a key's limits, then
`policy.decide(state, now, cost)` takes the stored state of one key and `now` (seconds, any
origin) and returns a `RateLimitDecision` plus the new state (None when nothing is to be written: a
rejection or a peek with `cost=0`). Several limits are decided together, all or nothing: a
request rejected by any limit consumes nothing from the others.

State per key is a tuple with one entry per limit, in the order of the rates:
- GCRA (token bucket semantics, burst = limit) and shaping: the theoretical arrival time (TAT).
- fixed window: (window_number, count), window_number = floor(now / period).
- sliding window counter: (window_number, previous_count, current_count).

No I/O, no clock, no storage here. The Redis Lua script in `redis_store` mirrors this file;
the store contract tests hold the two to the same answers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

from surge.config.units import Rate

# A little slack so float rounding never rejects the last token of a window.
EPSILON = 1e-7


class RateLimitDecision(NamedTuple):
    """The answer for one request. `remaining` and `reset_after` describe the limit
    closest to exhaustion (the one a client should pace itself by), `tightest` says which;
    times are in seconds;
    `retry_after` is inf when the request can never pass (cost above the limit)."""

    allowed: bool
    remaining: int
    reset_after: float  # until that limit is fully restored
    retry_after: float  # 0 when allowed; otherwise until the same request could pass
    tightest: int = 0  # which of the key's limits the figures above describe (its index)
    delay: float = 0.0  # shaping only: how long to hold the request before serving it


State = tuple[Any, ...]
_new = tuple.__new__  # builds a RateLimitDecision without NamedTuple's keyword handling (hot path)


def fixed_window_step(entry: Any, rate: Rate, now: float, cost: int) -> tuple:
    """At most `limit` per window of `period` seconds aligned on multiples of the period."""
    window = now // rate.period
    count = entry[1] if entry is not None and entry[0] == window else 0
    reset = (window + 1) * rate.period - now
    if count + cost > rate.limit:
        retry = reset if cost <= rate.limit else math.inf
        return False, entry, max(0, rate.limit - count), reset, retry
    count += cost
    return True, (window, count), rate.limit - count, reset, 0.0


def sliding_window_step(entry: Any, rate: Rate, now: float, cost: int) -> tuple:
    """Sliding window counter: the previous window's count weighted by its overlap."""
    period = rate.period
    window = now // period
    previous = current = 0
    if entry is not None:
        if entry[0] == window:
            previous, current = entry[1], entry[2]
        elif entry[0] == window - 1:
            previous = entry[2]
    elapsed = now - window * period
    used = previous * (1.0 - elapsed / period) + current
    reset = (2 * period - elapsed) if current else (period - elapsed if previous else 0.0)
    if used + cost > rate.limit + EPSILON:
        retry = _sliding_retry(previous, current, rate, elapsed, cost)
        return False, entry, max(0, int(rate.limit - used + EPSILON)), reset, retry
    current += cost
    remaining = max(0, int(rate.limit - used - cost + EPSILON))
    return True, (window, previous, current), remaining, 2 * period - elapsed, 0.0


def _sliding_retry(previous: int, current: int, rate: Rate, elapsed: float, cost: int) -> float:
    """How long until the weighted count leaves room for `cost` (inf if it never will)."""
    limit, period = rate.limit, rate.period
    if cost > limit:
        return math.inf
    if previous and current + cost <= limit:  # the previous window decays enough in this one
        return (current + cost - limit) / previous * period + period - elapsed
    wait = period - elapsed  # next window: today's count becomes the decaying previous one
    if current + cost > limit:
        wait += (current + cost - limit) / current * period
    return wait


class RateLimitPolicy:
    """A key's limits under one algorithm. Subclasses decide; all are pure.

    `fresh`, when not None, is the one `RateLimitDecision` object that `decide` returns for a
    request of cost 1 on a key with its whole quota: callers may recognise it by identity and answer
    from what they prebuilt for it (the gateway's headers) instead of reading its fields.
    Such a policy also promises a shortcut: a key whose state is a float below `now` has its
    whole quota, and a request of cost 1 leaves its state at `now + fresh_step`; a caller may
    take it without calling `decide`."""

    algorithm = "gcra"
    fresh: RateLimitDecision | None = None
    fresh_step = 0.0

    def __init__(self, rates: tuple[Rate, ...] | list[Rate]) -> None:
        if not rates:
            raise ValueError("a policy needs at least one rate")
        self.rates = tuple(rates)

    def decide(self, state: State | None, now: float,
               cost: int = 1) -> tuple[RateLimitDecision, Any]:
        raise NotImplementedError

    def expires_at(self, state: State) -> float:
        """When `state` is back to 'never seen' and may be dropped."""
        raise NotImplementedError


class StepPolicy(RateLimitPolicy):
    """A per-limit `step` function combined over all limits, all or nothing. A step takes
    (entry or None, rate, now, cost) and returns (allowed, new_entry, remaining,
    reset_after, retry_after)."""

    step: Callable[[Any, Rate, float, int], tuple]

    def decide(self, state: State | None, now: float,
               cost: int = 1) -> tuple[RateLimitDecision, Any]:
        rates = self.rates
        if state is None or len(state) != len(rates):
            state = (None,) * len(rates)
        entries = []
        allowed = True
        best = (math.inf, 0.0, 0)  # (remaining, reset, index) of the tightest limit
        retry = 0.0
        for i, rate in enumerate(rates):
            ok, entry, remaining, reset, wait = self.step(state[i], rate, now, cost)
            entries.append(entry)
            if not ok:
                allowed = False
                retry = max(retry, wait)
            if remaining < best[0] or (remaining == best[0] and reset > best[1]):
                best = (remaining, reset, i)
        if not allowed:
            return _new(RateLimitDecision, (False, best[0], best[1], retry, best[2], 0.0)), None
        return _new(RateLimitDecision, (True, best[0], best[1], 0.0, best[2], 0.0)), (
            tuple(entries) if cost else None
        )


class Gcra(RateLimitPolicy):
    """GCRA, the default: per limit, a bucket of `limit` tokens refilled one per `period /
    limit` seconds, kept as a theoretical arrival time (TAT). `decide` is a closure with
    its constants and builtins bound as locals, which is worth a third of a call's time: this
    is the gateway's hot path. With one limit (the common case) the state is a bare float."""

    algorithm = "gcra"

    def __init__(self, rates: tuple[Rate, ...] | list[Rate]) -> None:
        super().__init__(rates)
        if len(self.rates) == 1:
            self.decide = _single_gcra(self.rates)  # type: ignore[method-assign,assignment]
            self.fresh, self.fresh_step = self.decide(None, 0.0)
        else:
            self.decide = _multi_gcra(self.rates)  # type: ignore[method-assign,assignment]

    def expires_at(self, state: Any) -> float:
        return state if state.__class__ is float else max(state)


def _single_gcra(
        rates: tuple[Rate, ...]) -> Callable[[Any, float, int], tuple[RateLimitDecision, Any]]:
    period = rates[0].period
    limit = rates[0].limit
    interval = period / limit
    eps, inf, new, decision, as_int, real = EPSILON, math.inf, _new, RateLimitDecision, int, float
    # a full bucket spending one token: what the general path below computes for tat == now
    fresh = new(decision, (True, as_int((period - interval) / interval + eps), interval, 0.0,
                           0, 0.0))

    def decide(tat: Any, now: float, cost: int = 1) -> tuple[RateLimitDecision, Any]:
        if tat.__class__ is not real or tat < now:  # never seen (None), or a full bucket
            if cost == 1:
                return fresh, now + interval
            tat = now
        new_tat = tat + cost * interval
        earliest = new_tat - period  # when this request conforms
        if earliest > now + eps:
            retry = earliest - now if cost <= limit else inf
            left = as_int((period - (tat - now)) / interval + eps)
            return new(decision, (False, left, tat - now, retry, 0, 0.0)), None
        left = as_int((now - earliest) / interval + eps)
        return new(decision, (True, left, new_tat - now, 0.0, 0, 0.0)), (new_tat if cost else None)

    return decide


def _multi_gcra(
        rates: tuple[Rate, ...]) -> Callable[[Any, float, int], tuple[RateLimitDecision, Any]]:
    """The same as `_single_gcra` for each limit, then all or nothing."""
    limits = tuple((i, r.period, r.limit, r.period / r.limit) for i, r in enumerate(rates))
    n = len(limits)
    eps, inf, new, decision, as_int = EPSILON, math.inf, _new, RateLimitDecision, int

    def decide(state: Any, now: float, cost: int = 1) -> tuple[RateLimitDecision, Any]:
        if state.__class__ is not tuple or len(state) != n:
            state = (now,) * n
        new_state = []
        retry = 0.0  # stays 0 while every limit admits
        best_left, best_reset, best_i = inf, 0.0, 0
        for i, period, limit, interval in limits:
            tat = state[i]
            if tat < now:
                tat = now
            new_tat = tat + cost * interval
            earliest = new_tat - period
            if earliest > now + eps:
                wait = earliest - now if cost <= limit else inf
                if wait > retry:
                    retry = wait
                left, reset = as_int((period - (tat - now)) / interval + eps), tat - now
            else:
                left, reset = as_int((now - earliest) / interval + eps), new_tat - now
            new_state.append(new_tat)
            if left < best_left or (left == best_left and reset > best_reset):
                best_left, best_reset, best_i = left, reset, i
        if retry:
            return new(decision, (False, best_left, best_reset, retry, best_i, 0.0)), None
        return new(decision, (True, best_left, best_reset, 0.0, best_i, 0.0)), (
            tuple(new_state) if cost else None
        )

    return decide


class FixedWindow(StepPolicy):
    algorithm = "fixed_window"
    step = staticmethod(fixed_window_step)

    def expires_at(self, state: State) -> float:
        return max((e[0] + 1) * r.period for e, r in zip(state, self.rates, strict=True))


class SlidingWindow(StepPolicy):
    algorithm = "sliding_window"
    step = staticmethod(sliding_window_step)

    def expires_at(self, state: State) -> float:
        return max((e[0] + 2) * r.period for e, r in zip(state, self.rates, strict=True))


class Shaping(RateLimitPolicy):
    """Leaky bucket as a shaper: instead of rejecting a burst, delay each request until its
    slot (requests leave at the pace of every limit, no burst). A request whose delay would
    exceed `max_delay` (the bounded queue is full) is rejected and consumes nothing."""

    algorithm = "shaping"

    def __init__(self, rates: tuple[Rate, ...] | list[Rate], max_delay: float = 1.0) -> None:
        super().__init__(rates)
        self.max_delay = max_delay

    def decide(self, state: State | None, now: float,
               cost: int = 1) -> tuple[RateLimitDecision, Any]:
        rates, max_delay = self.rates, self.max_delay
        if state is None or len(state) != len(rates):
            state = (None,) * len(rates)
        depart = max([now, *(tat for tat in state if tat is not None)])
        delay = depart - now
        # the tightest limit is the one whose queue has the least room left, in requests
        index = min(range(len(rates)), key=lambda i: rates[i].limit / rates[i].period)
        interval = rates[index].period / rates[index].limit
        if delay > max_delay + EPSILON:
            return _new(RateLimitDecision, (False, 0, delay, delay - max_delay, index, 0.0)), None
        if not cost:
            left = int((max_delay - delay) / interval + EPSILON) + 1
            return _new(RateLimitDecision, (True, left, delay, 0.0, index, delay)), None
        queued = delay + cost * interval  # when the queue drains after this request
        left = max(0, math.floor((max_delay - queued) / interval + EPSILON) + 1)
        new_state = tuple(depart + cost * r.period / r.limit for r in rates)
        return _new(RateLimitDecision, (True, left, queued, 0.0, index, delay)), new_state

    def expires_at(self, state: State) -> float:
        return max(state)


ALGORITHMS: dict[str, type[RateLimitPolicy]] = {
    "gcra": Gcra,
    "sliding_window": SlidingWindow,
    "fixed_window": FixedWindow,
    "shaping": Shaping,
}


def make_policy(algorithm: str, rates: tuple[Rate, ...] | list[Rate],
                **options: Any) -> RateLimitPolicy:
    """The policy for `algorithm` (one of ALGORITHMS) over `rates`."""
    return ALGORITHMS[check_algorithm(algorithm)](rates, **options)


def check_algorithm(name: str) -> str:
    if name not in ALGORITHMS:
        known = ", ".join(ALGORITHMS)
        raise ValueError(f"unknown algorithm {name!r} (expected one of: {known})")
    return name
