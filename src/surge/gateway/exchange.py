"""One request's trip through the gateway: route, pick an upstream, borrow a pooled connection,
stream the body up and the response down, then account for it. Callback-driven on purpose:
no task and no future per request, so the hot path stays a few plain method calls.

The client side (parsing, pipelining, deadlines) lives in `gateway.client`; the upstream side
(parsing responses) in `upstreams.connection`; what happens when something fails (retries,
timeouts, stalls) in `gateway.recovery`. This module is the glue: what the client is told and
what is counted."""

from __future__ import annotations

import asyncio
import functools
import logging
from http import HTTPStatus
from typing import TYPE_CHECKING, Final

from surge.errors import BadPath
from surge.gateway import recovery
from surge.gateway.hedge import HedgeLeg
from surge.gateway.policy import Answer, BodyWatcher, Identity, Reply, Verdict
from surge.gateway.request_ids import REQUEST_IDS
from surge.http import headers as h
from surge.http.flow import HOLDING, POLICY_WAIT
from surge.observe import problem as p
from surge.observe.problem import Problem, problem_document, problem_response
from surge.routing.paths import normalize
from surge.upstreams.caller import Caller
from surge.upstreams.upstream import EWMA_ALPHA

if TYPE_CHECKING:
    from surge.gateway.client import ClientConnection
    from surge.gateway.snapshot import RouteRuntime
    from surge.http.headers import ResponseHead
    from surge.upstreams.connection import UpstreamConnection
    from surge.upstreams.service import ServiceRuntime
    from surge.upstreams.upstream import Upstream

log: Final = logging.getLogger("surge.gateway")

# A request body up to this size is kept after sending, so the request can be replayed.
REPLAY_BUFFER: Final = 64 * 1024
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_PHRASES: Final = {status.value: status.phrase.encode() for status in HTTPStatus}


class Exchange(Caller):
    # Defaults live on the class: a new exchange sets three attributes instead of forty, and
    # only the ones a request actually changes are written.
    method = b"-"
    target = b""
    http11 = True
    keep_alive = True
    host: bytes | None = None
    length = -1
    chunked = False
    expect = False
    request_id: bytes = b""  # set in start(); b"" until then
    xff: bytes | None = None
    cookie: bytes | None = None
    idempotency_key = False
    hop: frozenset[bytes] | None = None  # header names the client's Connection makes hop-by-hop
    route: RouteRuntime | None = None  # None until routed (an early refusal never is)
    path = ""  # the normal form of the target's path (routing.paths), set before routing
    upstream: Upstream | None = None  # the last one picked
    # Set at routing and typed as present: every path that reads it runs after routing
    # (compiled, reading it unset raises AttributeError).
    service: ServiceRuntime = None  # type: ignore[assignment]
    conn: UpstreamConnection | None = None
    tried: tuple[Upstream, ...] = ()
    head = b""
    body: list[bytes] | None = None  # the request body kept for a replay, framed
    replayable_body = True           # False once the body outgrew REPLAY_BUFFER
    body_sent = 0
    kept = 0
    received = 0
    req_done = False
    status = 0
    out_chunked = False
    sent_bytes = 0
    responded = False
    deadline = 0.0
    sticky_hit = False
    tunnel = False
    holding = False
    counted = False  # holds one of the gateway's max_inflight slots
    total_deadline = 0.0  # the route's `timeout`, on the gateway's clock
    progress = -1         # body bytes seen at the sweeper's last look
    still_since = 0.0     # when the sweeper last saw body bytes move
    hedge: HedgeLeg | None = None  # the second copy of a hedged request, while it runs
    hedge_timer: asyncio.TimerHandle | None = None
    extra_headers = b""  # response header lines added by policies, each ending in CRLF
    informed = False  # a 1xx was forwarded: the client acts on this upstream's answer
    # The policy chain's state (see policy.py): how many of the route's policies let the
    # request go on (their after-hooks run, in reverse), who the caller is, the target and
    # the service the policies leave for the upstream head, the response body's watchers.
    passed = 0
    identity: Identity | None = None
    upstream_target = b""
    watchers: list[BodyWatcher] | None = None
    answered_here = False  # the gateway answered (an error, a policy's reply), not an upstream

    def __init__(self, client: ClientConnection, started: float) -> None:
        # `downstream` (the Caller's) is the same connection, as the upstream side knows it.
        self.client = self.downstream = client
        self.started = started
        self.headers: list[tuple[bytes, bytes]] = []

    # -- request side ----------------------------------------------------------------------------

    def start(self) -> None:
        """Route the request and send it on its way (called when it is this request's turn)."""
        gw = self.client.gw
        if not self.request_id:
            self.request_id = REQUEST_IDS.new()
        if gw.active >= gw.max_inflight:
            self.fail(p.GATEWAY_OVERLOADED, "the gateway is at its limit of "
                      f"{gw.max_inflight} requests in flight", retry_after=b"1")
            return
        gw.active += 1
        self.counted = True
        target = self.target
        if not target or target[0] != 47:  # b"/"
            origin = h.origin_form(target, self.host)
            if origin is None:
                self.fail(p.INVALID_TARGET, "the request target must be origin-form, or "
                          "absolute-form naming the Host header's authority")
                return
            target = origin  # routed on, and forwarded as, its origin-form
        # Read as latin-1 text (one character per byte), as the route table reads it: `in`
        # on text is one plain C call, where bytes' `in` first tries its operand as an int and
        # clears a TypeError when it is not (an exception per request).
        text = target.decode("latin-1")
        if "#" in text:  # a fragment is never part of a request target (RFC 9112 3.2)
            text = text[:text.find("#")]
            target = target[:len(text)]
        q = text.find("?")
        raw = text if q < 0 else text[:q]
        try:
            # Routing, policies and prefix stripping all read the normal form.
            path = normalize(raw, gw.keep_encoded_slash, gw.merge_slashes)
        except BadPath as exc:
            self.fail(p.INVALID_PATH, str(exc))
            return
        self.path = path
        routes = gw.snapshot.routes
        host = (self.host.partition(b":")[0].decode("latin-1")
                if routes.uses_host and self.host else None)
        versions = routes.versions
        version = (versions.read(self.headers, text[q + 1:] if q >= 0 else "")
                   if versions is not None else None)
        found = routes.table.match(self.method.decode("latin-1"), path, host,
                                   self.header_map() if routes.uses_headers else _EMPTY,
                                   version)
        if found is None:
            self.fail(p.NO_ROUTE, f"no route for {path}")
            return
        if found.known_versions is not None:
            asked = f"version {version!r}" if version is not None else "no version"
            self.fail(p.UNKNOWN_VERSION, f"{found.prefix} serves versions "
                      f"{', '.join(found.known_versions)}; this request asked for {asked}")
            return
        route: RouteRuntime = found.source  # typed here: compiled, its reads are native
        self.route = route
        if route.timeout:
            self.total_deadline = self.started + route.timeout
        if self.length > gw.max_body_bytes:
            self.fail(p.BODY_TOO_LARGE, f"request body of {self.length} bytes is over the "
                      f"limit of {gw.max_body_bytes}")
            return
        sent = raw if gw.forward_original else path
        if route.strip_prefix:
            # The client's bytes can be cut at the prefix only where they spell it; where
            # only the normal form reached the route, that is what is stripped and sent.
            sent = route.strip(sent if sent.startswith(route.prefix) else path)
        if sent is not raw:  # `normalize` returns its argument when it is already normal
            target = sent.encode("latin-1") + (target[q:] if q >= 0 else b"")
        self.service = gw.snapshot.services[route.service]
        if route.policies:
            self.upstream_target = target  # the policies may change it, and the headers
            self.run_policies(0)
            return
        self.head = self.upstream_head(target)
        if self.expect:
            self.proceed()
        else:
            self.dispatch()

    def run_policies(self, index: int) -> None:
        """Run the route's policies from `index`; the first answer ends the request here.
        Once all let it go on, its upstream head is built from what they left."""
        policies = self.routed().policies
        while index < len(policies):
            try:
                verdict = policies[index].before(self)
            except Exception:  # a policy bug answers 500; the gateway keeps serving
                log.exception("policy %s failed", policies[index])
                self.fail(p.POLICY_ERROR, "a gateway policy failed")
                return
            index += 1
            if verdict is None:
                self.passed = index
                continue
            if isinstance(verdict, Answer):
                self.answer(verdict)
                return
            if isinstance(verdict, Reply):
                self.reply(verdict)
                return
            task = asyncio.ensure_future(verdict)
            task.add_done_callback(functools.partial(self.policy_settled, index=index))
            self.client.pause_reading_for(POLICY_WAIT)
            return
        self.head = self.upstream_head(self.upstream_target)
        self.proceed()

    def policy_settled(self, task: asyncio.Future[Verdict], index: int) -> None:
        if self.cancelled:
            return
        self.client.resume_reading_for(POLICY_WAIT)
        try:
            verdict = task.result()
        except Exception:  # a policy bug answers 500; the gateway keeps serving
            log.exception("policy %s failed", self.routed().policies[index - 1])
            self.fail(p.POLICY_ERROR, "a gateway policy failed")
            return
        if verdict is None:
            self.passed = index
            self.run_policies(index)
        elif isinstance(verdict, Reply):
            self.reply(verdict)
        else:
            self.answer(verdict)

    def answer(self, verdict: Answer) -> None:
        self.fail(verdict.problem, verdict.detail, headers=verdict.headers)

    def proceed(self) -> None:
        if self.expect and not self.req_done:
            self.client.write(_CONTINUE)
        self.dispatch()

    def run_after(self, status: int, block: bytes) -> None:
        """The after-hooks, in reverse, of the policies that let this request go on."""
        policies = self.routed().policies
        index = self.passed
        while index:
            index -= 1
            try:
                policies[index].after(self, status, block)
            except Exception:  # the answer goes out without what this policy would add
                log.exception("policy %s failed", policies[index])

    # -- what policies may change before the upstream head is built -------------------------

    def set_request_header(self, name: bytes, value: bytes | None) -> None:
        """Send `name: value` upstream in place of whatever the client sent under that name
        (None: remove it), so a forwarded claim cannot be spoofed by the client."""
        lname = name.lower()
        self.headers = [(n, v) for n, v in self.headers if n.lower() != lname]
        if value is not None:
            self.headers.append((name, value))

    def use_service(self, name: str) -> bool:
        """Send this request to service `name` instead of the route's (a split, a canary);
        False, and nothing changed, when the current snapshot has no such service."""
        service = self.client.gw.snapshot.services.get(name)
        if service is None:
            return False
        self.service = service
        return True

    def tell_watchers(self, data: bytes | None) -> None:
        """Hand the watchers a piece of the body, or its end (None). One that fails is
        dropped and logged: what it watched for (a cache entry) is lost, the response is not."""
        watchers = self.watchers
        assert watchers is not None
        for watcher in list(watchers):
            try:
                if data is None:
                    watcher.end()
                else:
                    watcher.body(data)
            except Exception:
                log.exception("body watcher %s failed", watcher)
                watchers.remove(watcher)

    def watch(self, watcher: BodyWatcher) -> None:
        """Let `watcher` see the upstream's response body (called from an after-hook)."""
        if self.watchers is None:
            self.watchers = []
        self.watchers.append(watcher)

    def routed(self) -> RouteRuntime:
        """The route, read where only a routed request can be (policies, hedging, deadlines
        run after routing)."""
        route = self.route
        assert route is not None, "read before routing"
        return route

    def header_map(self) -> dict[str, str]:
        """Lower-cased request headers, built only when a route matches on headers."""
        return {n.decode("latin-1").lower(): v.decode("latin-1") for n, v in self.headers}

    def upstream_head(self, target: bytes) -> bytes:
        # Built with bytes %-formatting of bytes (and one int): compiled, each such expression
        # is one allocation and a memcpy per part, where b"".join goes through the buffer
        # protocol item by item.
        hop = self.hop
        lines = [b"%s: %s\r\n" % (name, value) for name, value in self.headers
                 if hop is None or name.lower() not in hop]
        ip = self.client.ip
        xff = self.xff
        forwarded = b"%s, %s" % (xff, ip) if xff else ip
        host = self.host
        extra = b"X-Forwarded-Host: %s\r\n" % host if host is not None else b""
        upgrade = self.upgrade
        if upgrade is not None:
            extra = b"%sConnection: Upgrade\r\nUpgrade: %s\r\n" % (extra, upgrade)
        if self.chunked:
            extra = b"%sTransfer-Encoding: chunked\r\n" % extra
        elif self.length >= 0:
            extra = b"%sContent-Length: %d\r\n" % (extra, self.length)
        return (b"%s %s HTTP/1.1\r\n%sX-Forwarded-For: %s\r\nX-Forwarded-Proto: http\r\n"
                b"X-Request-ID: %s\r\n%s\r\n"
                % (self.method, target, b"".join(lines), forwarded, self.request_id, extra))

    def dispatch(self) -> None:
        """Pick an upstream (not one this request already tried) and ask its pool for a
        connection; `attach` follows, now or later."""
        service = self.service
        now = self.client.gw.now()
        up = service.sticky_pick(self.cookie) if service.sticky_cookie else None
        if up is not None:
            self.sticky_hit = True
        else:
            key = (service.hash_key(self.client.ip, self.path, self.headers, self.cookie)
                   if service.hashing else None)
            up = service.balancer.pick(now, key, self.tried)
        if up is None:
            if self.tried:
                self.fail(p.NONE_REACHED,
                          f"no upstream of service '{service.name}' could be reached")
            else:
                self.fail(p.NO_HEALTHY_UPSTREAM,
                          f"service '{service.name}' has no healthy upstream", retry_after=b"1")
            return
        if not self.tried:
            service.requests += 1
        self.upstream = up
        self.holding = True
        self.tried += (up,)
        up.inflight += 1
        pool = up.pool
        idle = pool.idle
        if idle:
            # The common case, without the pool's general path: the warmest idle connection,
            # used recently enough to be known alive (what else may go where: `Pool.acquire`).
            conn = idle[-1]
            if now - conn.idle_since < pool.idle_close.reuse_within and not conn.closed:
                idle.pop()
                self.attach(conn)
                return
        pool.acquire(self, now)

    def replayable(self) -> bool:
        """Whether this request, lost on its way up, could be sent again (its body, if any,
        known to fit the replay buffer): then it may take a connection idle long enough to be
        closing, since losing that race costs a retry, not the request."""
        return recovery.replayable(self) and not self.chunked and self.length <= REPLAY_BUFFER

    def attach(self, conn: UpstreamConnection) -> None:
        if self.cancelled:
            conn.pool.release(conn)
            return
        self.conn = conn
        conn.exchange = self
        body = self.body
        if body:
            conn.transport.write(self.head + b"".join(body))
            self.body_sent = len(body)
        else:
            conn.transport.write(self.head)
        client = self.client
        if client.write_paused:
            conn.pause_reading()
        if self.req_done:
            self.deadline = client.gw.now() + client.gw.upstream_timeout
            if self.routed().hedge_delay is not None:
                self.arm_hedge()
        if client.paused:
            client.resume_reading_for(HOLDING)

    def request_body(self, data: bytes) -> None:
        if self.responded and self.conn is None:
            return  # answered already (an error); the rest of the body is read and dropped
        self.received += len(data)
        gw = self.client.gw
        if self.received > gw.max_body_bytes:
            self.too_large()
            return
        framed = h.chunk(data) if self.chunked else data
        self.forward_body(framed)

    def request_end(self) -> None:
        self.req_done = True
        if self.responded:
            if self.conn is None:
                self.client.exchange_done(self, self.client.gw.now())
            return
        if self.chunked:
            self.forward_body(h.LAST_CHUNK)
        if self.conn is not None:
            self.deadline = self.client.gw.now() + self.client.gw.upstream_timeout
            if self.routed().hedge_delay is not None:
                self.arm_hedge()

    def forward_body(self, framed: bytes) -> None:
        body = self.body
        if self.replayable_body:
            if body is None:
                self.body = body = []
            self.kept += len(framed)
            body.append(framed)
        conn = self.conn
        if conn is not None:
            conn.transport.write(framed)
            if body is not None:
                self.body_sent = len(body)
                if self.kept > REPLAY_BUFFER:
                    # Too big to replay; all of it is sent, so nothing is lost.
                    self.body = None
                    self.replayable_body = False
        elif self.kept > REPLAY_BUFFER:
            self.client.pause_reading_for(HOLDING)  # until a connection is ready

    def too_large(self) -> None:
        if self.status:
            self.client.gw.stats.failed[p.BODY_TOO_LARGE.reason] += 1
            self.client.abort()
            return
        self.keep_alive = False
        self.abandon_upstream()
        self.fail(p.BODY_TOO_LARGE, "request body is over the limit of "
                  f"{self.client.gw.max_body_bytes} bytes")

    # -- upstream side ---------------------------------------------------------------------------

    def response_head(self, status: int, head: ResponseHead) -> None:
        if self.hedge_timer is not None or self.hedge is not None:
            self.end_hedge()
        if 502 <= status <= 504 and recovery.replayable(self) and recovery.may_retry(self):
            # An idempotent request answered "bad gateway / unavailable / timeout": try another
            # upstream before telling the client, dropping this answer with its connection.
            self.abandon_upstream(ok=False)
            recovery.schedule_retry(self)
            return
        self.status = status
        self.deadline = 0.0
        if self.passed:
            self.run_after(status, head.block)
        client = self.client
        extra = self.extra_headers
        service = self.service
        up = self.upstream
        if service.sticky_cookie and not self.sticky_hit and up is not None:
            extra = b"%sSet-Cookie: %s=%s; Path=/; HttpOnly\r\n" % (
                extra, service.sticky_cookie, up.id.encode())
        if status == 101:
            extra = b"%s%s\r\n" % (extra, head.upgrade_lines()[2:])
        elif status == 204 or status == 304 or self.method == b"HEAD":
            pass
        elif head.length < 0:
            if self.http11:
                self.out_chunked = True
                extra = b"%sTransfer-Encoding: chunked\r\n" % extra
            else:
                self.keep_alive = False  # the body ends when the connection does
        if self.upgrade is not None and status != 101:
            self.keep_alive = False  # the client's parser is past the point of return
        if not self.req_done:
            self.keep_alive = False  # answered before the body was read: say we will close
        if not self.keep_alive:
            extra = b"%sConnection: close\r\n" % extra
        elif not self.http11:
            extra = b"%sConnection: keep-alive\r\n" % extra
        if not head.dated:
            extra = b"%s%s" % (extra, h.DATE.line)
        client.write(b"%s%s\r\n%s\r\n" % (head.status_line(status), self.request_id, extra))
        if self.method == b"HEAD" and status != 101:
            # httptools cannot be told a HEAD answer has no body: finish here and never
            # reuse this connection.
            conn = self.conn
            if conn is not None:
                conn.exchange = None
                conn.close()
            self.conn = None
            self.finish(True)

    def forwards_interim(self, status: int) -> bool:
        """Whether a 1xx answer (101 aside) goes to the client: not an upstream's 100, as
        Surge never forwards Expect and answered it itself; never to an HTTP/1.0 client,
        which knows no 1xx (RFC 9110 15.2); not once the request is answered."""
        return status != 100 and self.http11 and not self.status and not self.responded

    def interim(self, status: int, raw: bytes) -> None:
        """A 1xx answer before the final one (103 Early Hints), forwarded at once, hop-by-hop
        lines cut. From then on the request is neither retried nor hedged: the client has
        begun to act on this upstream's answer, which another could contradict."""
        if not self.forwards_interim(status):
            return
        if self.hedge_timer is not None or self.hedge is not None:
            self.end_hedge()
        self.informed = True
        head = h.ResponseHead(raw)
        self.client.write(b"HTTP/1.1 %d %s%s\r\n\r\n" % (status, head.reason, head.block))

    def response_body(self, data: bytes) -> None:
        if self.status == 0:
            return
        self.sent_bytes += len(data)
        if self.watchers is not None:
            self.tell_watchers(data)
        data = h.chunk(data) if self.out_chunked else data
        out = self.client.out
        if out is not None:
            out.append(data)
        else:
            self.client.transport.write(data)

    def response_end(self, conn: UpstreamConnection, upstream_keep_alive: bool) -> None:
        status = self.status
        if status == 0 or status == 101:
            return  # an interim answer ended, or an upgrade follows
        if self.out_chunked:
            self.client.write(h.LAST_CHUNK)
        conn.exchange = None
        self.conn = None
        now = self.client.gw.now()
        if upstream_keep_alive and self.req_done:
            conn.pool.release(conn, now)
        else:
            conn.close()
        self.finish(status < 500, now)

    def upstream_upgraded(self, rest: bytes) -> None:
        """The upstream answered 101: from now on both sides are a plain byte tunnel."""
        conn = self.conn
        if conn is None:
            return
        client = self.client
        self.tunnel = True
        conn.tunnel = client.transport
        if rest:
            client.write(rest)
        client.start_tunnel(conn)
        self.account(client.gw.now())

    # -- hedging: see gateway/hedge.py ---------------------------------------------------------

    def arm_hedge(self) -> None:
        if self.hedge_timer is None and self.hedge is None and recovery.replayable(self):
            self.hedge_timer = self.client.gw.loop.call_later(
                self.routed().hedge_delay, self.launch_hedge)  # type: ignore[arg-type]

    def launch_hedge(self) -> None:
        """No answer yet: send one more copy to an upstream this request has not tried."""
        self.hedge_timer = None
        service = self.service
        if self.status or self.cancelled or self.responded or not self.holding:
            return
        if not service.has_alternative(self.tried):
            return
        if not service.budget.try_retry(service.requests):
            return
        up = service.balancer.pick(self.client.gw.now(), None, self.tried)
        if up is None:
            return
        service.hedges += 1
        leg = self.hedge = HedgeLeg(self, up)
        self.tried += (up,)
        up.inflight += 1
        up.pool.acquire(leg, self.client.gw.now())  # a leg stands in for the exchange

    def hedge_answered(self, leg: HedgeLeg, status: int, head: ResponseHead) -> None:
        self.take_leg(leg)
        self.response_head(status, head)

    def hedge_informed(self, leg: HedgeLeg, status: int, raw: bytes) -> None:
        self.take_leg(leg)
        self.interim(status, raw)

    def take_leg(self, leg: HedgeLeg) -> None:
        """The second copy's answer (final or forwarded 1xx) began first: it becomes the
        exchange's, the first is cancelled (no verdict on its upstream: slower is not
        failed)."""
        self.hedge = None
        self.service.hedge_wins += 1
        primary = self.conn
        if primary is not None:
            primary.exchange = None
            primary.abort()
        self.leave_upstream(None)
        conn, leg.conn = leg.conn, None
        leg.cancelled = True  # its upstream's in-flight count passes to this exchange
        self.conn = conn
        if conn is not None:
            conn.exchange = self
        self.upstream = leg.upstream
        self.holding = True

    def end_hedge(self) -> None:
        timer, self.hedge_timer = self.hedge_timer, None
        if timer is not None:
            timer.cancel()
        if self.hedge is not None:
            self.hedge.drop(None)

    # -- failures reported by the connection, the pool and the gateway: see recovery.py ------

    def upstream_lost(self, conn: UpstreamConnection, exc: Exception | None) -> None:
        recovery.upstream_lost(self, conn, exc)

    def upstream_broken(self, detail: str) -> None:
        recovery.upstream_broken(self, detail)

    def connect_failed(self, exc: BaseException) -> None:
        recovery.connect_failed(self, exc)

    def overloaded(self, problem: Problem) -> None:
        recovery.overloaded(self, problem)

    def timeout(self) -> None:
        recovery.timeout(self)

    def check_progress(self, now: float) -> None:
        recovery.check_progress(self, now)

    # -- endings ---------------------------------------------------------------------------------

    def leave_upstream(self, ok: bool | None, now: float = 0.0) -> None:
        """This request is done with its current upstream; `ok` None means no verdict."""
        if not self.holding:
            return
        self.holding = False
        up = self.upstream
        assert up is not None, "holding without an upstream"
        up.inflight -= 1
        if ok is None:
            return
        now = now or self.client.gw.now()
        if ok:
            up.ewma += EWMA_ALPHA * (now - self.started - up.ewma)
            up.answered_at = now
            if not up.failures:
                return  # the common case: nothing for outlier detection to learn
        self.service.record(up, ok, now)

    def abandon_upstream(self, ok: bool | None = None) -> None:
        conn = self.conn
        if conn is not None:
            self.conn = None
            conn.exchange = None
            conn.abort()
        self.leave_upstream(ok)

    def cancel(self) -> None:
        """The client went away before its answer was complete: counted, and logged with
        nginx's 499 when it had no status yet."""
        if not self.responded and not self.tunnel and not self.cancelled:
            gw = self.client.gw
            gw.stats.failed[p.CLIENT_CLOSED] += 1
            if gw.access_log is not None:
                self.status = self.status or 499
                gw.access_log.write(self, gw.now() - self.started)
        self.cancelled = True
        if self.hedge_timer is not None or self.hedge is not None:
            self.end_hedge()
        self.release_slot()
        self.abandon_upstream()

    def release_slot(self) -> None:
        if self.counted:
            self.counted = False
            self.client.gw.active -= 1

    def fail(self, problem: Problem, detail: str, retry_after: bytes | None = None,
             headers: list[tuple[bytes, bytes]] | None = None) -> None:
        """Answer with a problem document instead of an upstream's response; counted under
        the problem's reason."""
        client = self.client
        if self.hedge_timer is not None or self.hedge is not None:
            self.end_hedge()
        client.gw.stats.failed[problem.reason] += 1
        if self.status:
            client.abort()
            return
        self.status = problem.status
        extra = [(b"X-Request-ID", self.request_id or b"-")]
        if retry_after is not None:
            extra.append((b"Retry-After", retry_after))
        if headers:
            extra += headers
        if not self.req_done and (self.chunked or self.length - self.received > REPLAY_BUFFER):
            self.keep_alive = False  # too much (or an unknown amount of) unread body: close
        body = problem_document(problem, detail, request_id=(self.request_id or b"-").decode())
        response = problem_response(problem, body, extra, close=not self.keep_alive)
        self.answered_here = True
        end = response.index(b"\r\n\r\n")
        if self.passed:
            self.run_after(problem.status, response[response.index(b"\r\n"):end])
        if self.extra_headers:  # headers policies added (e.g. RateLimit) go on errors too
            response = response[:end + 2] + self.extra_headers + response[end + 2:]
        client.write(response)
        self.answered()

    def reply(self, answer: Reply) -> None:
        """Answer with a policy's whole response (a cached one, a preflight, a token)."""
        status = self.status = answer.status
        self.answered_here = True
        block = b"".join([b"\r\n%s: %s" % (name, value) for name, value in answer.headers])
        if self.passed:
            self.run_after(status, block)
        if not self.req_done and (self.chunked or self.length - self.received > REPLAY_BUFFER):
            self.keep_alive = False  # as in fail(): too much unread body
        if status < 200 or status == 204 or status == 304:  # no body, no length (RFC 9110)
            body = framing = b""
        else:
            body = b"" if self.method == b"HEAD" else answer.body
            framing = b"\r\nContent-Length: %d" % len(answer.body)
        if not self.keep_alive:
            framing += b"\r\nConnection: close"
        elif not self.http11:
            framing += b"\r\nConnection: keep-alive"
        # A reply keeps a Date of its own (a cached response's); any other is dated now.
        dated = any(name.lower() == b"date" for name, _ in answer.headers)
        self.client.write(b"HTTP/1.1 %d %s\r\nX-Request-ID: %s%s%s\r\n%s%s\r\n%s" % (
            status, _PHRASES.get(status, b""), self.request_id, block, framing,
            b"" if dated else h.DATE.line, self.extra_headers, body))
        self.answered()

    def answered(self) -> None:
        """The gateway's own answer is written: account, and move on once the request is
        read (or the connection closes)."""
        self.responded = True
        self.deadline = 0.0
        client = self.client
        now = client.gw.now()
        self.account(now)
        if self.req_done or not self.keep_alive:
            client.exchange_done(self, now)

    def finish(self, ok: bool, now: float = 0.0) -> None:
        """The upstream's response is complete."""
        now = now or self.client.gw.now()
        if self.watchers is not None:
            self.tell_watchers(None)
        self.leave_upstream(ok, now)
        self.responded = True
        self.account(now)
        if not self.req_done:
            self.keep_alive = False  # answered early: the unread body cannot be skipped safely
        self.client.exchange_done(self, now)

    def account(self, now: float) -> None:
        gw = self.client.gw
        duration = now - self.started
        route = self.route
        if route is not None:
            route.stats.observe(self.status, duration)
        else:
            gw.stats.unrouted[self.status // 100] += 1
        if gw.access_log is not None:
            gw.access_log.write(self, duration)


_EMPTY: Final[dict[str, str]] = {}
