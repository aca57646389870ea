"""A steady mixed load for the chaos suite: GET `/name`, POST `/record` without an idempotency
key, POST `/record` with one, in turn. Each request carries its own `X-Request-ID`
(`get-N`, `post-N`, `idem-N`), so a delivery recorded twice upstream is traced to its request;
each answer's latency and `X-Upstream-Name` are kept, so latency to healthy upstreams can be
read apart from the faulty one's.

`MixedLoad` is `support.load.LoadLoop` (threads, pacing, counters, `summary`) with a different
request; `AsyncMixedLoad` sends the same mix from asyncio, for rates threads cannot reach."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import threading
import time
from dataclasses import dataclass
from typing import Self
from urllib.parse import urlsplit

import httptools
import httpx
import uvloop

from support.load import LoadLoop
from surge.scaling.load import Connection

KINDS = ("get", "post", "idem")
NON_IDEMPOTENT = "post"


@dataclass(frozen=True)
class PlannedRequest:
    kind: str              # one of KINDS
    request_id: str        # `<kind>-<number>`, sent as X-Request-ID
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Sample:
    kind: str
    request_id: str
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

    def next_request(self) -> PlannedRequest:
        number = next(self._numbers)  # itertools.count is atomic under the GIL
        kind = KINDS[number % len(KINDS)]
        request_id = f"{kind}-{number}"
        headers = {"X-Request-ID": request_id}
        if kind == "idem":
            headers["Idempotency-Key"] = request_id
        if kind == "get":
            return PlannedRequest(kind, request_id, "GET", "/name", headers, b"")
        return PlannedRequest(kind, request_id, "POST", "/record", headers, request_id.encode())

    def failed_ids(self, kind: str) -> set[str]:
        return {s.request_id for s in self.samples if s.kind == kind and not s.ok}

    def tally(self, planned: PlannedRequest, outcome: int | str, upstream: str | None,
              failure: str | None, latency: float) -> None:
        sample = Sample(planned.kind, planned.request_id, failure is None, latency, upstream)
        with self._lock:
            self.samples.append(sample)
            self._count(outcome, failure)

    def _one(self, client: httpx.Client) -> None:
        planned = self.next_request()
        kind = planned.kind
        upstream, failure = None, None
        started = time.perf_counter()
        try:
            response = client.request(planned.method, f"{self.url}{planned.path}",
                                      headers=planned.headers, content=planned.body)
            outcome: int | str = response.status_code
            upstream = response.headers.get("x-upstream-name")
            if not 200 <= response.status_code < 300:
                failure = f"{kind} {response.status_code} {_detail(response.content)}"
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
            failure = f"{kind} {type(exc).__name__}: {exc}"
        self.tally(planned, outcome, upstream, failure, time.perf_counter() - started)


def _detail(body: bytes) -> str:
    """What a failed answer says: a problem document's `detail`, else the body's start."""
    try:
        return str(json.loads(body)["detail"])
    except (ValueError, KeyError, TypeError):
        return repr(body[:120])


class NamedConnection(Connection):
    """`surge load`'s raw keep-alive connection, also noting who answered."""

    upstream: str | None = None

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"x-upstream-name":
            self.upstream = value.decode("latin-1")


class AsyncMixedLoad(MixedLoad):
    """The same mix from one asyncio thread over `concurrency` raw keep-alive connections
    (`surge.scaling.load.Connection`): several times the rate the httpx threads reach, for
    `bench/chaos.py`. Each connection keeps its share of `rate`, as the threads do."""

    def start(self) -> Self:
        self._started_at = time.monotonic()
        thread = threading.Thread(target=self._run, name="load", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def _run(self) -> None:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(self._main())

    async def _main(self) -> None:
        await asyncio.gather(*(self._connection() for _ in range(self.concurrency)))

    async def _connection(self) -> None:
        parts = urlsplit(self.url)
        conn = NamedConnection(parts.hostname or "127.0.0.1", parts.port or 80, b"",
                               keep_body=True)
        interval = self.concurrency / self.rate if self.rate else 0.0
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                if interval:
                    next_at = max(next_at + interval, time.monotonic())
                    await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                await self._send(conn, parts.netloc)
        finally:
            conn.close()

    async def _send(self, conn: NamedConnection, host: str) -> None:
        planned = self.next_request()
        kind = planned.kind
        lines = [f"{planned.method} {planned.path} HTTP/1.1", f"Host: {host}",
                 f"Content-Length: {len(planned.body)}",
                 *(f"{name}: {value}" for name, value in planned.headers.items())]
        conn.head = ("\r\n".join(lines) + "\r\n\r\n").encode() + planned.body
        conn.upstream = None
        failure = None
        started = time.perf_counter()
        outcome: int | str
        try:
            outcome = code = await asyncio.wait_for(conn.request(), self.timeout)
            if not 200 <= code < 300:
                failure = f"{kind} {code} {_detail(bytes(conn.body))}"
        except (OSError, TimeoutError, httptools.HttpParserError) as exc:
            conn.close()
            outcome = type(exc).__name__
            failure = f"{kind} {outcome}: {exc}"
        self.tally(planned, outcome, conn.upstream, failure, time.perf_counter() - started)
