"""RFC 9457 problem details: the one table of problems Surge answers with, and the one shape
they take on the wire, for the gateway's own answers, the admin API and the ASGI middleware
alike. Pure: builds bytes, sends nothing.

Every problem any part of Surge can answer with is an entry of `TABLE`, made here and nowhere
else: the data path passes an entry (`Exchange.fail(problem, detail)`), each `SurgeError`
class names its entry, and the admin client reads one back from its `type`. docs/problems.md
lists the same table (tests/docs/test_problems.py keeps the two equal and finds any problem
made outside it). Compiled with the data path: `Problem` is a native class whose fields the
gateway reads as struct fields, and each entry is built once, at import."""

from __future__ import annotations

import json
import time
from http import HTTPStatus
from typing import Final, final

from surge.http.headers import DATE

PROBLEM_TYPE_BASE: Final = "https://surge.dev/problems/"
CONTENT_TYPE: Final = b"application/problem+json"


@final
class Problem:
    """One kind of problem: its HTTP status, `type` (a slug under PROBLEM_TYPE_BASE), `title`
    (the same for every answer of that type), and the `reason` it is counted under in
    `surge_requests_failed_total` ("" for the admin API's problems, which are not counted).
    Several entries may share a type and differ in reason (what exactly went wrong)."""

    def __init__(self, status: int, type_: str, title: str, reason: str = "") -> None:
        self.status = status
        self.type = type_
        self.uri = PROBLEM_TYPE_BASE + type_
        self.title = title
        self.reason = reason
        self.status_line = b"HTTP/1.1 %d %s" % (status, HTTPStatus(status).phrase.encode())

    def __repr__(self) -> str:
        return f"Problem({self.status}, {self.type!r}, reason={self.reason!r})"


TABLE: Final[list[Problem]] = []


def _entry(status: int, type_: str, title: str, reason: str = "") -> Problem:
    problem = Problem(status, type_, title, reason)
    TABLE.append(problem)
    return problem


# -- the client's request: refused before or while routing --------------------------------------
BAD_REQUEST: Final = _entry(400, "bad-request", "Bad Request", "bad_request")
MISSING_HOST: Final = _entry(400, "bad-request", "Bad Request", "missing_host")
INVALID_HOST: Final = _entry(400, "bad-request", "Bad Request", "invalid_host")
INVALID_TARGET: Final = _entry(400, "bad-request", "Bad Request", "invalid_target")
INVALID_PATH: Final = _entry(400, "bad-request", "Bad Request", "invalid_path")
UNAUTHORIZED: Final = _entry(401, "unauthorized", "Unauthorized", "unauthorized")
UNKNOWN_VERSION: Final = _entry(400, "unknown-version", "Unknown API Version",
                                "unknown_version")
NO_ROUTE: Final = _entry(404, "no-route", "Not Found", "no_route")
CLIENT_HEADER_TIMEOUT: Final = _entry(408, "client-header-timeout", "Request Timeout",
                                      "client_header_timeout")
CLIENT_BODY_TIMEOUT: Final = _entry(408, "client-body-timeout", "Request Timeout",
                                    "client_body_timeout")
BODY_TOO_LARGE: Final = _entry(413, "body-too-large", "Content Too Large", "body_too_large")
URL_TOO_LONG: Final = _entry(414, "url-too-long", "URI Too Long", "url_too_long")
RATE_LIMITED: Final = _entry(429, "rate-limited", "Too Many Requests", "rate_limited")
HEADER_TOO_LARGE: Final = _entry(431, "header-too-large", "Request Header Fields Too Large",
                                 "header_too_large")
UNSUPPORTED_TRANSFER_CODING: Final = _entry(501, "transfer-coding-not-implemented",
                                            "Not Implemented", "unsupported_transfer_coding")
METHOD_NOT_IMPLEMENTED: Final = _entry(501, "method-not-implemented", "Not Implemented",
                                       "method_not_implemented")
HTTP_VERSION: Final = _entry(505, "http-version-not-supported", "HTTP Version Not Supported",
                             "http_version")

# -- the gateway itself -------------------------------------------------------------------------
INTERNAL: Final = _entry(500, "internal", "Internal Server Error", "internal_error")
POLICY_ERROR: Final = _entry(500, "internal", "Internal Server Error", "policy_error")
GATEWAY_OVERLOADED: Final = _entry(503, "overloaded", "Service Unavailable",
                                   "gateway_overloaded")

# -- the upstream side --------------------------------------------------------------------------
NONE_REACHED: Final = _entry(502, "bad-gateway", "Bad Gateway", "connect_failed")
UPSTREAM_RESET: Final = _entry(502, "bad-gateway", "Bad Gateway", "upstream_reset")
UPSTREAM_GARBAGE: Final = _entry(502, "bad-gateway", "Bad Gateway", "upstream_garbage")
CONNECT_FAILED: Final = _entry(502, "connect-failed", "Bad Gateway", "connect_failed")
NO_HEALTHY_UPSTREAM: Final = _entry(503, "no-healthy-upstream", "Service Unavailable",
                                    "no_healthy_upstream")
MAX_PENDING: Final = _entry(503, "overloaded", "Service Unavailable", "max_pending")
UPSTREAM_REMOVED: Final = _entry(503, "overloaded", "Service Unavailable", "upstream_removed")
CONNECT_TIMEOUT: Final = _entry(504, "connect-timeout", "Gateway Timeout", "connect_timeout")
UPSTREAM_TIMEOUT: Final = _entry(504, "upstream-timeout", "Gateway Timeout", "upstream_timeout")
ROUTE_DEADLINE: Final = _entry(504, "route-deadline", "Gateway Timeout", "route_deadline")

# -- the admin API, the CLI and library users (not counted: no reason) --------------------------
INVALID_CONFIG: Final = _entry(400, "invalid-config", "Invalid configuration")
INVALID_JOB: Final = _entry(400, "invalid-job", "Invalid job")
NOT_FOUND: Final = _entry(404, "not-found", "Not Found")
METHOD_NOT_ALLOWED: Final = _entry(405, "method-not-allowed", "Method Not Allowed")
REQUEST_TIMEOUT: Final = _entry(408, "request-timeout", "Request Timeout")
ILLEGAL_TRANSITION: Final = _entry(500, "illegal-transition", "Illegal state transition")
STORE_UNAVAILABLE: Final = _entry(503, "store-unavailable", "State store unavailable")
BROKER_UNAVAILABLE: Final = _entry(503, "broker-unavailable", "Job broker unavailable")

# Reasons counted in `surge_requests_failed_total` for a request cut off, not answered with a
# problem: a response had begun (an error cannot replace it), or the client went away.
CLIENT_CLOSED: Final = "client_closed"
UPSTREAM_BODY_TIMEOUT: Final = "upstream_body_timeout"
CUT_OFF_REASONS: Final = (CLIENT_CLOSED, UPSTREAM_BODY_TIMEOUT)


def by_uri(uri: str) -> Problem | None:
    """The entry a problem document's `type` names (the first, where several share it)."""
    for problem in TABLE:
        if problem.uri == uri:
            return problem
    return None


def problem_document(problem: Problem, detail: str | None = None, **extra: object) -> bytes:
    """The JSON body: `type`, `title`, `status`, then `detail` and any extra members."""
    doc: dict[str, object] = {
        "type": problem.uri,
        "title": problem.title,
        "status": problem.status,
    }
    if detail:
        doc["detail"] = detail
    doc.update(extra)
    return json.dumps(doc, separators=(",", ":")).encode()


def problem_response(
    problem: Problem,
    body: bytes,
    headers: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
    *,
    close: bool = False,
) -> bytes:
    """A whole HTTP/1.1 response carrying a problem document, dated."""
    lines = [
        problem.status_line,
        DATE.tick(time.time())[:-2],
        b"Content-Type: " + CONTENT_TYPE,
        b"Content-Length: %d" % len(body),
    ]
    lines.extend(name + b": " + value for name, value in headers)
    if close:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body
