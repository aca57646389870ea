"""What an exchange does when its upstream fails it: which failures are retried (and where,
after what backoff, within which budget), what each timeout answers, how a stalled body or a
route's deadline is cut off. Plain functions of the exchange (`ex`), kept apart so the happy
path reads on its own; `Exchange` forwards the failures its connection, pool and gateway report
to the ones here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from surge.http import headers as h
from surge.observe import problem as p
from surge.upstreams.retry import backoff

if TYPE_CHECKING:
    from surge.gateway.exchange import Exchange
    from surge.observe.problem import Problem
    from surge.upstreams.connection import UpstreamConnection

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})


def upstream_lost(ex: Exchange, conn: UpstreamConnection, exc: Exception | None) -> None:
    """The upstream connection closed while serving this exchange."""
    ex.conn = None
    if ex.tunnel:
        ex.leave_upstream(True)
        ex.client.abort()
        return
    if ex.status:
        head = conn.head
        if head is not None and head.length < 0 and not head.chunked:
            if ex.out_chunked:
                ex.client.write(h.LAST_CHUNK)
            ex.finish(True)  # a close-delimited body ended normally
        else:
            ex.client.gw.stats.failed[p.UPSTREAM_RESET.reason] += 1
            ex.leave_upstream(False)
            ex.client.abort()  # truncated: the client must see it broke
        return
    # Only idempotent requests are replayed: a clean close before any answer looks the same
    # whether the upstream closed an idle connection just as this request arrived, or read
    # the request and then died (kill -9 closes with a FIN too), and a non-idempotent
    # request must never be delivered twice.
    retry_or_fail(ex, p.UPSTREAM_RESET, "upstream closed the connection before answering",
                  replay_safe=replayable(ex))

def upstream_broken(ex: Exchange, detail: str) -> None:
    """The upstream sent bytes that are not HTTP."""
    if ex.status:
        ex.client.gw.stats.failed[p.UPSTREAM_GARBAGE.reason] += 1
        ex.leave_upstream(False)
        ex.client.abort()
        return
    conn = ex.conn
    ex.conn = None
    if conn is not None:
        conn.exchange = None
    retry_or_fail(ex, p.UPSTREAM_GARBAGE, detail, replay_safe=replayable(ex))

def connect_failed(ex: Exchange, exc: BaseException) -> None:
    if ex.cancelled:
        ex.leave_upstream(None)
        return
    timeout = isinstance(exc, TimeoutError)  # (a subclass of OSError)
    retry_or_fail(ex, p.CONNECT_TIMEOUT if timeout else p.CONNECT_FAILED,
                  f"could not connect to an upstream of '{ex.service.name}': "
                  f"{'timed out' if timeout else exc}", replay_safe=True)

def overloaded(ex: Exchange, problem: Problem) -> None:
    """The service's pool cannot take the request (`max_pending`, `upstream_removed`)."""
    ex.leave_upstream(None)
    ex.fail(problem, f"service '{ex.service.name}' is over its "
            f"{problem.reason.replace('_', ' ')}", retry_after=b"1")

def timeout(ex: Exchange) -> None:
    """No response head within the upstream timeout."""
    ex.deadline = 0.0
    ex.abandon_upstream(ok=False)
    retry_or_fail(ex, p.UPSTREAM_TIMEOUT, "upstream did not answer within "
                  f"{ex.client.gw.upstream_timeout:g}s", replay_safe=replayable(ex))

def check_progress(ex: Exchange, now: float) -> None:
    """Called by the sweeper: cut off a body that stopped moving (client or upstream side)
    and a request past its route's total deadline. Costs the data path nothing."""
    if ex.total_deadline and now >= ex.total_deadline:
        past_deadline(ex)
        return
    client = ex.client
    if ex.tunnel or client.paused or client.write_paused:
        ex.still_since = 0.0  # waiting on our side, not theirs
        return
    if not ex.req_done:
        moved, limit = ex.received, client.gw.client_body_timeout
    elif ex.status:
        moved, limit = ex.sent_bytes, client.gw.upstream_body_timeout
    else:
        return  # waiting for a response head: the upstream timeout covers it
    if moved != ex.progress or not ex.still_since:
        ex.progress = moved
        ex.still_since = now
    elif now - ex.still_since >= limit:
        body_stalled(ex, limit)

def body_stalled(ex: Exchange, limit: float) -> None:
    client = ex.client
    if not ex.req_done:  # the client stopped sending its body
        if ex.status:
            client.gw.stats.failed[p.CLIENT_BODY_TIMEOUT.reason] += 1
            ex.abandon_upstream()
            client.abort()
            return
        ex.keep_alive = False
        ex.abandon_upstream()
        ex.fail(p.CLIENT_BODY_TIMEOUT, f"request body stalled for {limit:g}s")
    else:  # the upstream stopped sending its response body
        client.gw.stats.failed[p.UPSTREAM_BODY_TIMEOUT] += 1
        ex.abandon_upstream(ok=False)
        client.abort()

def past_deadline(ex: Exchange) -> None:
    ex.total_deadline = 0.0
    ex.deadline = 0.0
    timeout = ex.routed().timeout
    if ex.status:
        ex.client.gw.stats.failed[p.ROUTE_DEADLINE.reason] += 1
        ex.abandon_upstream(ok=False)
        ex.client.abort()
        return
    ex.abandon_upstream(ok=False)
    ex.cancelled = True  # a retry or a pool waiter must not pick it up again
    ex.fail(p.ROUTE_DEADLINE, f"no answer within the route's timeout of {timeout:g}s")

def replayable(ex: Exchange) -> bool:
    """Safe to send again (retry, hedge): idempotent, its body still held, and no 1xx of
    this upstream's forwarded (the client may already act on it)."""
    return (ex.replayable_body and not ex.informed
            and (ex.method in IDEMPOTENT or ex.idempotency_key))

def retry_or_fail(ex: Exchange, problem: Problem, detail: str, replay_safe: bool) -> None:
    ex.leave_upstream(False)
    if ex.hedge is not None:
        return  # the other copy of a hedged request may still answer
    if replay_safe and may_retry(ex):
        schedule_retry(ex)
    else:
        ex.fail(problem, detail)

def may_retry(ex: Exchange) -> bool:
    """Attempts are left, another upstream exists, and the service's retry budget grants
    one more (spending it)."""
    service = ex.service
    if len(ex.tried) > service.retry_attempts or not service.has_alternative(ex.tried):
        return False
    return service.budget.try_retry(service.requests)

def schedule_retry(ex: Exchange) -> None:
    """Try again on another upstream after a jittered backoff."""
    service = ex.service
    service.retries += 1
    ex.body_sent = 0
    delay = backoff(service.retry_backoff, len(ex.tried), service.rng)
    if delay < 0.001:
        ex.dispatch()
    else:
        ex.client.gw.loop.call_later(delay, retry_now, ex)

def retry_now(ex: Exchange) -> None:
    if not ex.cancelled:
        ex.dispatch()
