"""What an exchange does when its upstream fails it: which failures are retried (and where,
after what backoff, within which budget), what each timeout answers, how a stalled body or a
route's deadline is cut off. A base class of `Exchange`, kept apart so the happy path reads on
its own; every method here works on the exchange's own state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from surge.gateway import headers as h
from surge.upstreams.retry import backoff

if TYPE_CHECKING:
    from surge.upstreams.connection import UpstreamConnection

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})


class Recovery:
    """Failure handling of `Exchange` (see there for the attributes)."""

    def upstream_lost(self, conn: UpstreamConnection, exc: Exception | None) -> None:
        """The upstream connection closed while serving this exchange."""
        self.conn = None
        if self.tunnel:
            self.leave_upstream(True)
            self.client.abort()
            return
        if self.status:
            head = conn.head
            if head is not None and head.length < 0 and not head.chunked:
                if self.out_chunked:
                    self.client.write(h.LAST_CHUNK)
                self.finish(True)  # a close-delimited body ended normally
            else:
                self.client.gw.stats.failed["upstream_reset"] += 1
                self.leave_upstream(False)
                self.client.abort()  # truncated: the client must see it broke
            return
        # Only idempotent requests are replayed: a clean close before any answer looks the same
        # whether the upstream closed an idle connection just as this request arrived, or read
        # the request and then died (kill -9 closes with a FIN too), and a non-idempotent
        # request must never be delivered twice.
        self.retry_or_fail(502, "bad-gateway", "upstream closed the connection before answering",
                           "upstream_reset", replay_safe=self.replayable())

    def upstream_broken(self, detail: str) -> None:
        """The upstream sent bytes that are not HTTP."""
        if self.status:
            self.client.gw.stats.failed["upstream_garbage"] += 1
            self.leave_upstream(False)
            self.client.abort()
            return
        conn = self.conn
        self.conn = None
        if conn is not None:
            conn.exchange = None
        self.retry_or_fail(502, "bad-gateway", detail, "upstream_garbage",
                           replay_safe=self.replayable())

    def connect_failed(self, exc: BaseException) -> None:
        if self.cancelled:
            self.leave_upstream(None)
            return
        timeout = isinstance(exc, TimeoutError)  # (a subclass of OSError)
        self.retry_or_fail(504 if timeout else 502,
                           "connect-timeout" if timeout else "connect-failed",
                           f"could not connect to an upstream of '{self.service.name}': "
                           f"{'timed out' if timeout else exc}",
                           "connect_timeout" if timeout else "connect_failed", replay_safe=True)

    def overloaded(self, reason: str) -> None:
        self.leave_upstream(None)
        self.fail(503, "overloaded", f"service '{self.service.name}' is over its "
                  f"{reason.replace('_', ' ')}", reason, retry_after=b"1")

    def timeout(self) -> None:
        """No response head within the upstream timeout."""
        self.deadline = 0.0
        self.abandon_upstream(ok=False)
        self.retry_or_fail(504, "upstream-timeout", "upstream did not answer within "
                           f"{self.client.gw.upstream_timeout:g}s", "upstream_timeout",
                           replay_safe=self.replayable())

    def check_progress(self, now: float) -> None:
        """Called by the sweeper: cut off a body that stopped moving (client or upstream side)
        and a request past its route's total deadline. Costs the data path nothing."""
        if self.total_deadline and now >= self.total_deadline:
            self.past_deadline()
            return
        client = self.client
        if self.tunnel or client.paused or client.write_paused:
            self.still_since = 0.0  # waiting on our side, not theirs
            return
        if not self.req_done:
            moved, limit = self.received, client.gw.client_body_timeout
        elif self.status:
            moved, limit = self.sent_bytes, client.gw.upstream_body_timeout
        else:
            return  # waiting for a response head: the upstream timeout covers it
        if moved != self.progress or not self.still_since:
            self.progress = moved
            self.still_since = now
        elif now - self.still_since >= limit:
            self.body_stalled(limit)

    def body_stalled(self, limit: float) -> None:
        client = self.client
        if not self.req_done:  # the client stopped sending its body
            if self.status:
                client.gw.stats.failed["client_body_timeout"] += 1
                self.abandon_upstream()
                client.abort()
                return
            self.keep_alive = False
            self.abandon_upstream()
            self.fail(408, "client-body-timeout", "request body stalled for "
                      f"{limit:g}s", "client_body_timeout")
        else:  # the upstream stopped sending its response body
            client.gw.stats.failed["upstream_body_timeout"] += 1
            self.abandon_upstream(ok=False)
            client.abort()

    def past_deadline(self) -> None:
        self.total_deadline = 0.0
        self.deadline = 0.0
        timeout = self.route.timeout
        if self.status:
            self.client.gw.stats.failed["route_deadline"] += 1
            self.abandon_upstream(ok=False)
            self.client.abort()
            return
        self.abandon_upstream(ok=False)
        self.cancelled = True  # a retry or a pool waiter must not pick it up again
        self.fail(504, "route-deadline", f"no answer within the route's timeout of {timeout:g}s",
                  "route_deadline")

    def replayable(self) -> bool:
        return self.replayable_body and (self.method in IDEMPOTENT or self.idempotency_key)

    def retry_or_fail(self, status: int, type_: str, detail: str, reason: str,
                      replay_safe: bool) -> None:
        self.leave_upstream(False)
        if replay_safe and self.may_retry():
            self.schedule_retry()
        else:
            self.fail(status, type_, detail, reason)

    def may_retry(self) -> bool:
        """Attempts are left, another upstream exists, and the service's retry budget grants
        one more (spending it)."""
        service = self.service
        if len(self.tried) > service.retry_attempts or not service.has_alternative(self.tried):
            return False
        return service.budget.try_retry(service.requests)

    def schedule_retry(self) -> None:
        """Try again on another upstream after a jittered backoff."""
        service = self.service
        service.retries += 1
        self.body_sent = 0
        delay = backoff(service.retry_backoff, len(self.tried), service.rng)
        if delay < 0.001:
            self.dispatch()
        else:
            self.client.gw.loop.call_later(delay, self.retry_now)

    def retry_now(self) -> None:
        if not self.cancelled:
            self.dispatch()
