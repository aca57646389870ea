"""A small steady-load client for chaos tests: keep traffic flowing while something breaks.

    with LoadLoop(f"{gateway.url}/name", concurrency=4, rate=200) as load:
        load.wait_for(50)          # traffic is flowing
        upstreams[0].kill9()       # the chaos action
        load.wait_for(load.sent + 200)
    assert load.failed == 0, load.summary()

Each worker thread owns one keep-alive httpx client. A request fails when it gets a non-2xx
answer or a transport error; the first few failures are kept, described, for the message."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Self

import httpx


class LoadLoop:
    def __init__(self, url: str, concurrency: int = 4, rate: float | None = None, *,
                 method: str = "GET", content: bytes | None = None,
                 headers: dict[str, str] | None = None, timeout: float = 5.0,
                 keep_failures: int = 10) -> None:
        """`rate` is the total requests per second over all workers; None means as fast as
        each worker's previous answer allows (closed loop)."""
        self.url = url
        self.concurrency = concurrency
        self.rate = rate
        self.method = method
        self.content = content
        self.headers = headers or {}
        self.timeout = timeout
        self.keep_failures = keep_failures
        self.statuses: Counter[int | str] = Counter()
        self.failures: list[str] = []
        self._sent = 0
        self._failed = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started_at = 0.0

    @property
    def sent(self) -> int:
        """Requests finished, with an answer or an error."""
        return self._sent

    @property
    def failed(self) -> int:
        return self._failed

    @property
    def succeeded(self) -> int:
        return self._sent - self._failed

    def start(self) -> Self:
        self._started_at = time.monotonic()
        for i in range(self.concurrency):
            thread = threading.Thread(target=self._work, name=f"load-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Let each worker finish its request in flight, then return."""
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 1)
        self._threads.clear()

    def wait_for(self, requests: int, timeout: float = 10.0) -> None:
        """Block until at least `requests` requests have finished in total."""
        deadline = time.monotonic() + timeout
        while self._sent < requests:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self._sent} of {requests} requests after {timeout}s; "
                                   + self.summary())
            time.sleep(0.01)

    def summary(self) -> str:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items(), key=str))
        lines = [f"{self._sent} sent, {self._failed} failed ({statuses})"]
        lines += [f"  {failure}" for failure in self.failures]
        return "\n".join(lines)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _work(self) -> None:
        interval = self.concurrency / self.rate if self.rate else 0.0
        next_at = time.monotonic()
        with httpx.Client(timeout=self.timeout, headers=self.headers) as client:
            while not self._stop.is_set():
                if interval:
                    # Behind schedule: carry on from now rather than burst to catch up.
                    next_at = max(next_at + interval, time.monotonic())
                    if self._stop.wait(max(0.0, next_at - time.monotonic())):
                        return
                self._one(client)

    def _count(self, outcome: int | str, failure: str | None) -> None:
        """One answered or failed request (the caller holds `_lock`)."""
        self._sent += 1
        self.statuses[outcome] += 1
        if failure is not None:
            self._failed += 1
            if len(self.failures) < self.keep_failures:
                at = time.monotonic() - self._started_at
                self.failures.append(f"at {at:.3f}s: {failure}")

    def _one(self, client: httpx.Client) -> None:
        failure = None
        try:
            response = client.request(self.method, self.url, content=self.content)
            outcome: int | str = response.status_code
            if not 200 <= response.status_code < 300:
                failure = f"{response.status_code} {response.text[:120]!r}"
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
            failure = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self._count(outcome, failure)
