"""What the gateway's integration tests share: a surge.yaml builder on free ports, a raw-socket
HTTP/1.1 client (for what httpx hides: pipelining, framing, malformed input), a reader of the
admin `/metrics`, and the problem+json check every error answer must pass.

Processes come from `support.processes`; nothing here starts one."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from support.processes import UpstreamProcess
from surge.ports import free_ports

PROBLEM_TYPE = "application/problem+json"


# -- configuration ---------------------------------------------------------------------------------

def service(fleet: Sequence[UpstreamProcess | str], **options: Any) -> dict[str, Any]:
    """A service over `fleet` (processes or plain addresses) with any other service keys."""
    addresses = [u if isinstance(u, str) else u.address for u in fleet]
    return {"upstreams": addresses, **options}


def fast_health(**overrides: Any) -> dict[str, Any]:
    """Health checks quick enough for a test: verdicts within a few hundred milliseconds."""
    return {"path": "/healthz", "interval": "200ms", "timeout": "200ms", "rise": 2, "fall": 2,
            **overrides}


def surge_yaml(services: dict[str, Any], routes: list[dict[str, Any]], **gateway: Any) -> str:
    """A whole surge.yaml: listener and admin on free ports, access log off unless given."""
    listen, admin = free_ports(2)  # bound together, so never the same port twice
    head = {"listen": f"127.0.0.1:{listen}", "admin": f"127.0.0.1:{admin}",
            "access_log": "off", **gateway}
    return yaml.safe_dump({"gateway": head, "services": services, "routes": routes},
                          sort_keys=False)


def with_changes(text: str, change: Callable[[dict[str, Any]], None]) -> str:
    """The same surge.yaml after `change` edited its parsed form (listener and admin kept)."""
    data = yaml.safe_load(text)
    change(data)
    return yaml.safe_dump(data, sort_keys=False)


# -- a raw HTTP/1.1 client -------------------------------------------------------------------------

@dataclass
class Answer:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    version: str = "HTTP/1.1"
    framing: str = "length"   # length | chunked | close | none

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Wire:
    """One client connection spoken by hand. `send` writes bytes as given; `answer` reads one
    response, framed as HTTP/1.1 says (length, chunked, or until the server closes)."""

    address: str
    timeout: float = 5.0
    sock: socket.socket = field(init=False)
    buffer: bytes = b""

    def __post_init__(self) -> None:
        host, _, port = self.address.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=self.timeout)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def closed_by_peer(self, within: float = 3.0) -> bool:
        """Whether the server closes (or resets) this connection within `within` seconds."""
        self.sock.settimeout(within)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.buffer += data
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        finally:
            self.sock.settimeout(self.timeout)

    def answer(self, head_request: bool = False) -> Answer:
        head = self._until(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, status, reason = (lines[0].split(" ", 2) + [""])[:3]
        headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:]]
        answer = Answer(int(status), reason, headers, version=version)  # type: ignore[arg-type]
        if head_request or answer.status in (204, 304) or answer.status < 200:
            answer.framing = "none"
        elif (answer.header("transfer-encoding") or "").lower() == "chunked":
            answer.framing, answer.body = "chunked", self._chunked()
        elif answer.header("content-length") is not None:
            answer.body = self._exactly(int(answer.header("content-length") or 0))
        else:
            answer.framing, answer.body = "close", self._to_eof()
        return answer

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not self._fill():
                raise ConnectionError(f"closed before {marker!r}; got {self.buffer[:200]!r}")
        found, _, self.buffer = self.buffer.partition(marker)
        return found

    def _exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if not self._fill():
                raise ConnectionError(f"closed after {len(self.buffer)} of {n} body bytes")
        found, self.buffer = self.buffer[:n], self.buffer[n:]
        return found

    def _chunked(self) -> bytes:
        parts = []
        while True:
            size = int(self._until(b"\r\n").split(b";")[0], 16)
            if size == 0:
                self._until(b"\r\n")  # no trailers: the empty line ends the body
                return b"".join(parts)
            parts.append(self._exactly(size))
            self._exactly(2)

    def _to_eof(self) -> bytes:
        while self._fill():
            pass
        found, self.buffer = self.buffer, b""
        return found


def request(method: str, target: str, headers: dict[str, str] | None = None,
            body: bytes = b"", host: str = "test.local") -> bytes:
    """Request bytes with `Host` and, for a body, `Content-Length` added."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# -- what the gateway says about itself ------------------------------------------------------------

def metric(admin_url: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when none)."""
    text = httpx.get(f"{admin_url}/metrics").text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def failed_count(admin_url: str, reason: str) -> float:
    return metric(admin_url, "surge_requests_failed_total", reason=reason)


def upstream_views(admin_url: str, service_name: str) -> dict[str, dict[str, Any]]:
    """`/api/services`, one service's upstreams by address."""
    services = httpx.get(f"{admin_url}/api/services").json()["services"]
    (found,) = [s for s in services if s["name"] == service_name]
    return {u["address"]: u for u in found["upstreams"]}


def assert_problem(status: int, content_type: str | None, body: bytes, expected: int) -> dict:
    """The answer is an RFC 9457 problem with `expected` status; returns the document."""
    assert status == expected, (status, body[:300])
    assert (content_type or "").startswith(PROBLEM_TYPE), content_type
    document = json.loads(body)
    assert document["status"] == expected
    assert document["type"] and document["title"], document
    return document


def eventually(check: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    """Poll `check` until it holds; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout}s: {what or check}")
        time.sleep(0.05)


def names_seen(url: str, count: int, client: httpx.Client | None = None) -> list[str]:
    """What `/name` answered for `count` requests to `url`, in order."""
    own = client is None
    client = client or httpx.Client(timeout=5.0)
    try:
        return [client.get(url).text for _ in range(count)]
    finally:
        if own:
            client.close()
