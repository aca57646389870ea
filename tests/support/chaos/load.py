"""A steady mixed load for the chaos suite: GET `/name`, POST `/record` without an idempotency
key, POST `/record` with one, in turn. Each request carries its own `X-Request-ID`
(`get-N`, `post-N`, `idem-N`), so a delivery recorded twice upstream is traced to its request;
each answer's latency and `X-Upstream-Name` are kept, so latency to healthy upstreams can be
read apart from the faulty one's.

It is `support.load.LoadLoop` (threads, pacing, counters, `summary`) with a different request."""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

import httpx

from support.load import LoadLoop

KINDS = ("get", "post", "idem")
NON_IDEMPOTENT = "post"


@dataclass(frozen=True)
class Sample:
    kind: str
    ok: bool
    latency: float
    upstream: str | None   # X-Upstream-Name of the answer, None for the gateway's own


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile (`share` in 0..1) of `values`; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


class MixedLoad(LoadLoop):
    def __init__(self, base_url: str, concurrency: int = 6, rate: float | None = None,
                 timeout: float = 10.0) -> None:
        super().__init__(base_url, concurrency, rate, timeout=timeout)
        self.samples: list[Sample] = []
        self._numbers = itertools.count()

    def failed_of(self, kind: str) -> int:
        return sum(1 for s in self.samples if s.kind == kind and not s.ok)

    def sent_of(self, kind: str) -> int:
        return sum(1 for s in self.samples if s.kind == kind)

    def latencies_via(self, upstreams: set[str]) -> list[float]:
        """Latencies of the successful answers that came from `upstreams`."""
        return [s.latency for s in self.samples if s.ok and s.upstream in upstreams]

    def _one(self, client: httpx.Client) -> None:
        number = next(self._numbers)  # itertools.count is atomic under the GIL
        kind = KINDS[number % len(KINDS)]
        request_id = f"{kind}-{number}"
        headers = {"X-Request-ID": request_id}
        if kind == "idem":
            headers["Idempotency-Key"] = request_id
        method, path = ("GET", "/name") if kind == "get" else ("POST", "/record")
        upstream, failure = None, None
        started = time.perf_counter()
        try:
            response = client.request(method, f"{self.url}{path}", headers=headers,
                                      content=b"" if kind == "get" else request_id.encode())
            outcome: int | str = response.status_code
            upstream = response.headers.get("x-upstream-name")
            if not 200 <= response.status_code < 300:
                failure = f"{kind} {response.status_code} {_detail(response)}"
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
            failure = f"{kind} {type(exc).__name__}: {exc}"
        latency = time.perf_counter() - started
        with self._lock:
            self.samples.append(Sample(kind, failure is None, latency, upstream))
            self._sent += 1
            self.statuses[outcome] += 1
            if failure is not None:
                self._failed += 1
                if len(self.failures) < self.keep_failures:
                    at = time.monotonic() - self._started_at
                    self.failures.append(f"at {at:.3f}s: {failure}")


def _detail(response: httpx.Response) -> str:
    """What a failed answer says: a problem document's `detail`, else the body's start."""
    try:
        return str(response.json()["detail"])
    except (ValueError, KeyError, TypeError):
        return repr(response.text[:120])
