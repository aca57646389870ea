"""RFC 9457 problem details: the one shape every error takes on the wire, for the gateway's
own answers and the admin API alike. Pure: builds bytes, sends nothing."""

from __future__ import annotations

import json
import time
from http import HTTPStatus

from surge.errors import SurgeError
from surge.http.headers import DATE

PROBLEM_TYPE_BASE = "https://surge.dev/problems/"
CONTENT_TYPE = b"application/problem+json"


def problem_document(
    status: int, type_: str, title: str | None = None, detail: str | None = None, **extra: object
) -> bytes:
    """The JSON body: `type` is a URI under PROBLEM_TYPE_BASE, `title` defaults to the reason."""
    doc: dict[str, object] = {
        "type": PROBLEM_TYPE_BASE + type_,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
    }
    if detail:
        doc["detail"] = detail
    doc.update(extra)
    return json.dumps(doc, separators=(",", ":")).encode()


def error_document(error: SurgeError, detail: str | None = None, **extra: object) -> bytes:
    return problem_document(
        error.status, error.type, error.title, detail or str(error) or None, **extra
    )


def problem_response(
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
    *,
    close: bool = False,
) -> bytes:
    """A whole HTTP/1.1 response carrying a problem document, dated."""
    reason = HTTPStatus(status).phrase.encode()
    lines = [
        b"HTTP/1.1 %d %s" % (status, reason),
        DATE.tick(time.time())[:-2],
        b"Content-Type: " + CONTENT_TYPE,
        b"Content-Length: %d" % len(body),
    ]
    lines.extend(name + b": " + value for name, value in headers)
    if close:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body
