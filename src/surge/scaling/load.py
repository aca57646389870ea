"""The engine of `surge load`: an open-model HTTP load generator on asyncio. Requests become
due on the profile's schedule whatever the answers; a pool of keep-alive HTTP/1.1 connections
(raw sockets, httptools' response parser) sends them. Latency is measured from when a request
was due (on `time.perf_counter`: uvloop's clock ticks in whole milliseconds), so a slow
server cannot hide its queueing (no coordinated omission); a request sent more than
`LATE_AFTER` after it was due is counted late.

Each second a `Second` (target and achieved rate, p50/p95/p99, errors by kind, replicas) goes
to `on_second`; the run ends with a `Result`. Printing both is at the bottom."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httptools

from surge.scaling.profile import Profile

LATE_AFTER = 0.05  # seconds between due and sent before a request counts as late
TICK = 0.005  # how often the scheduler releases due requests
READ_SIZE = 65536


@dataclass
class Second:
    at: float  # seconds into the run; the figures cover the second before it
    target_rate: float  # requests due in this second
    achieved_rate: float  # answers (and failures) completed in this second
    p50: float
    p95: float
    p99: float
    errors: Counter[str]
    replicas: str


@dataclass
class Result:
    duration: float = 0.0
    due: int = 0
    sent: int = 0
    ok: int = 0
    late: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(self.errors.values())


class Connection:
    """One keep-alive HTTP/1.1 connection: `request()` writes a GET and reads its answer."""

    def __init__(self, host: str, port: int, head: bytes, *, keep_body: bool = False) -> None:
        self.host, self.port, self.head = host, port, head
        self.keep_body = keep_body
        self.body = bytearray()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self._done = False
        self._status = 0
        self._keep_alive = False
        self._parser = httptools.HttpResponseParser(self)

    # httptools callbacks
    def on_body(self, data: bytes) -> None:
        if self.keep_body:
            self.body.extend(data)

    def on_message_complete(self) -> None:
        # Read both here: the parser forgets them once it is ready for the next message.
        self._status = self._parser.get_status_code()
        self._keep_alive = self._parser.should_keep_alive()
        self._done = True

    async def request(self) -> int:
        """The status of one answer. Raises OSError, ConnectionError or TimeoutError."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self._parser = httptools.HttpResponseParser(self)
        assert self.reader is not None
        self._done = False
        self.body.clear()
        self.writer.write(self.head)
        while not self._done:
            chunk = await self.reader.read(READ_SIZE)
            if not chunk:
                raise ConnectionResetError("the server closed the connection")
            self._parser.feed_data(chunk)
        if not self._keep_alive:
            self.close()
        return self._status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class LoadRun:
    def __init__(self, url: str, profile: Profile, *, duration: float | None,
                 connections: int = 64, timeout: float = 10.0, admin: str | None = None,
                 on_second: Callable[[Second], None] | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"expected an http:// URL, got {url!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.head = (f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                     "User-Agent: surge-load\r\n\r\n").encode()
        self.profile, self.duration, self.timeout = profile, duration, timeout
        self.connections = connections
        self.admin = admin
        self.on_second = on_second
        self.result = Result()
        self._start = 0.0
        self._queue: asyncio.Queue[float] = asyncio.Queue()
        self._second_latencies: list[float] = []
        self._second_errors: Counter[str] = Counter()
        self._stopping = False

    async def run(self) -> Result:
        self._start = time.perf_counter()
        workers = [asyncio.create_task(self._worker()) for _ in range(self.connections)]
        reporter = asyncio.create_task(self._report_every_second())
        try:
            await self._schedule()
        finally:
            self._stopping = True
            await self._queue.join()  # every due request answered or failed
            for task in (*workers, reporter):
                task.cancel()
            await asyncio.gather(*workers, reporter, return_exceptions=True)
            self.result.duration = time.perf_counter() - self._start
        return self.result

    async def _schedule(self) -> None:
        """Release requests as they fall due: the profile's cumulative count decides."""
        while True:
            elapsed = time.perf_counter() - self._start
            if self.duration is not None and elapsed >= self.duration:
                elapsed = self.duration
            due = math.floor(self.profile.sent_by(elapsed) + 1e-9)
            for _ in range(due - self.result.due):
                self._queue.put_nowait(self._start + elapsed)
            self.result.due = max(self.result.due, due)
            if self.duration is not None and elapsed >= self.duration:
                return
            await asyncio.sleep(TICK)

    async def _worker(self) -> None:
        connection = Connection(self.host, self.port, self.head)
        try:
            while True:
                due_at = await self._queue.get()
                try:
                    await self._send(connection, due_at, time.perf_counter())
                finally:
                    self._queue.task_done()
        finally:
            connection.close()

    async def _send(self, connection: Connection, due_at: float, sent_at: float) -> None:
        self.result.sent += 1
        if sent_at - due_at > LATE_AFTER:
            self.result.late += 1
        try:
            status = await asyncio.wait_for(connection.request(), self.timeout)
        except (TimeoutError, OSError, httptools.HttpParserError) as exc:
            connection.close()
            self._fail(_error_kind(exc))
            return
        if status >= 400:
            self._fail(str(status))
            return
        latency = time.perf_counter() - due_at
        self.result.ok += 1
        self.result.latencies.append(latency)
        self._second_latencies.append(latency)

    def _fail(self, kind: str) -> None:
        self.result.errors[kind] += 1
        self._second_errors[kind] += 1

    async def _report_every_second(self) -> None:
        tick = 1
        while True:
            await asyncio.sleep(max(0.0, self._start + tick - time.perf_counter()))
            latencies, self._second_latencies = sorted(self._second_latencies), []
            errors, self._second_errors = self._second_errors, Counter()
            replicas = await read_replicas(self.admin) if self.admin else "-"
            if self.on_second is not None:
                self.on_second(Second(
                    at=float(tick),
                    target_rate=self.profile.sent_by(tick) - self.profile.sent_by(tick - 1),
                    achieved_rate=float(len(latencies) + sum(errors.values())),
                    p50=percentile(latencies, 0.5), p95=percentile(latencies, 0.95),
                    p99=percentile(latencies, 0.99), errors=errors, replicas=replicas,
                ))
            tick += 1


async def read_replicas(admin: str, timeout: float = 0.5) -> str:
    """`api=3/4` (replicas now / desired) per service from the admin API's `/api/scaling`;
    `-` when it cannot be read. Accepts a list of services with `name`, or a mapping."""
    target = admin if "://" in admin else f"http://{admin}"
    parts = urlsplit(target)
    head = (f"GET /api/scaling HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            "Connection: close\r\n\r\n").encode()
    connection = Connection(parts.hostname or "127.0.0.1", parts.port or 80, head,
                            keep_body=True)
    try:
        status = await asyncio.wait_for(connection.request(), timeout)
        return _replicas_text(json.loads(bytes(connection.body))) if status == 200 else "-"
    except (OSError, TimeoutError, ValueError, httptools.HttpParserError):
        return "-"
    finally:
        connection.close()


def _replicas_text(doc: Any) -> str:
    services = doc.get("services", doc) if isinstance(doc, dict) else doc
    if isinstance(services, dict):
        services = [{"name": k, **v} for k, v in services.items() if isinstance(v, dict)]
    shown = [
        f"{s.get('name', '?')}={s['replicas']}"
        + (f"/{s['desired']}" if s.get("desired") is not None else "")
        for s in services or [] if isinstance(s, dict) and "replicas" in s
    ]
    return " ".join(shown) or "-"


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionError):
        return "reset"
    if isinstance(exc, httptools.HttpParserError):
        return "bad-response"
    return "io"


def percentile(sorted_values: list[float], q: float) -> float:
    """The `q` quantile (0..1) of already sorted values, nearest-rank; NaN when empty."""
    if not sorted_values:
        return math.nan
    rank = math.ceil(q * len(sorted_values)) - 1
    return sorted_values[min(len(sorted_values) - 1, max(0, rank))]


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.1f}ms"


def print_live_line(s: Second) -> None:
    errors = " ".join(f"{k}:{v}" for k, v in sorted(s.errors.items())) or "0"
    print(f"{s.at:5.0f}s  target {s.target_rate:7.1f}/s  achieved {s.achieved_rate:7.1f}/s  "
          f"p50 {_ms(s.p50):>8}  p95 {_ms(s.p95):>8}  p99 {_ms(s.p99):>8}  "
          f"errors {errors}  replicas {s.replicas}", flush=True)


def print_summary(r: Result) -> None:
    lat = sorted(r.latencies)
    errors = ", ".join(f"{k} {v}" for k, v in sorted(r.errors.items())) or "none"
    print(f"\n{r.sent} requests in {r.duration:.1f}s ({r.sent / max(r.duration, 1e-9):.1f}/s): "
          f"{r.ok} ok, {r.failed} failed ({errors}), "
          f"{r.late} sent late (>{LATE_AFTER * 1000:.0f}ms after due)")
    print(f"latency from due time: p50 {_ms(percentile(lat, 0.5))}  "
          f"p95 {_ms(percentile(lat, 0.95))}  p99 {_ms(percentile(lat, 0.99))}  "
          f"max {_ms(lat[-1] if lat else math.nan)}")
