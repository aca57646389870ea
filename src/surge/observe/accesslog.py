"""The access log: one JSON object per request, to stdout or a file. Lines are buffered and
written in batches by the gateway's sweeper, so logging costs no system call per request."""

from __future__ import annotations

import json
import sys
import time
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from surge.gateway.exchange import Exchange

_BATCH = 256


class AccessLog:
    def __init__(self, target: str) -> None:
        self.stream: IO[bytes] = (
            sys.stdout.buffer if target == "stdout" else open(target, "ab")  # noqa: SIM115
        )
        self.owned = target != "stdout"
        self.lines: list[bytes] = []

    def write(self, ex: Exchange, duration: float) -> None:
        route, up = ex.route, ex.upstream
        self.lines.append(json.dumps({
            "time": round(time.time(), 3),
            "request_id": (ex.request_id or b"-").decode(),
            "client": ex.client.ip.decode(),
            "method": ex.method.decode("latin-1"),
            "path": ex.target.decode("latin-1"),
            "status": ex.status,
            "route": route.label if route is not None else None,
            "upstream": up.address if up is not None else None,
            "duration_ms": round(duration * 1000, 3),
            "bytes": ex.sent_bytes,
        }, separators=(",", ":")).encode() + b"\n")
        if len(self.lines) >= _BATCH:
            self.flush()

    def flush(self) -> None:
        if self.lines:
            lines, self.lines = self.lines, []
            try:
                self.stream.write(b"".join(lines))
                self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed stdout must not take the gateway down

    def close(self) -> None:
        self.flush()
        if self.owned:
            self.stream.close()
