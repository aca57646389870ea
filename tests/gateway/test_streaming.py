"""Bodies stream through the gateway in both directions with backpressure: 50 MiB up and back,
and 50 MiB down (also to a client that stops reading for a while), arrive whole while the
gateway process's resident memory grows by less than 20 MiB (sampled during the transfer, so
buffering a body anywhere would show)."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from gateway.stack import Wire, request, service, surge_yaml
from support.processes import rss_of
from support.upstream_app import pattern

pytestmark = pytest.mark.integration

SIZE = 50 * 1024 * 1024
PIECE = 256 * 1024
MAX_GROWTH = 20 * 1024 * 1024


@pytest.fixture(scope="module")
def gw(stack):
    (a,) = stack.upstreams(1, names=["a"])
    gateway = stack.gateway(surge_yaml({"app": service([a])}, [{"prefix": "/", "service": "app"}],
                                       max_body_bytes="64MiB"))
    httpx.get(f"{gateway.url}/name")   # warm: a pooled connection and loaded code
    return gateway


class PeakMemory:
    """Samples a process's RSS every 2 ms in a thread; `growth` is the peak over the start.
    (50 MiB can pass in well under 100 ms: a slower sampler could miss the peak.)"""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.baseline = rss_of(pid)
        self.peak = self.baseline
        self.samples = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)

    def sample(self) -> None:
        while not self.stop.wait(0.002):
            self.peak = max(self.peak, rss_of(self.pid))
            self.samples += 1

    @property
    def growth(self) -> int:
        return self.peak - self.baseline

    def __enter__(self) -> PeakMemory:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def upload_pieces() -> Iterator[bytes]:
    """50 MiB that are not one repeated block, so a reordered piece would change the hash."""
    for index in range(SIZE // PIECE):
        yield index.to_bytes(4, "big") * (PIECE // 4)


def test_a_50mib_upload_streams_up_and_back_without_the_gateway_holding_it(gw):
    sent = hashlib.sha256()
    sender_errors: list[BaseException] = []
    with Wire(gw.listen, timeout=30) as wire, PeakMemory(gw.pid) as memory:
        def send() -> None:
            try:
                wire.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
                for piece in upload_pieces():
                    sent.update(piece)
                    wire.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                wire.send(b"0\r\n\r\n")
            except BaseException as exc:
                sender_errors.append(exc)

        # The echo answers while the upload is still going: read while sending, or both stall.
        sender = threading.Thread(target=send)
        sender.start()
        answer = wire.answer()
        sender.join(30)
    assert not sender_errors, sender_errors
    assert answer.status == 200
    assert len(answer.body) == SIZE
    assert hashlib.sha256(answer.body).hexdigest() == sent.hexdigest()
    assert memory.samples > 10
    assert memory.growth < MAX_GROWTH, f"gateway RSS grew by {memory.growth / 2**20:.1f} MiB"


def test_a_50mib_download_streams_through_without_the_gateway_holding_it(gw):
    received = hashlib.sha256()
    length = 0
    with PeakMemory(gw.pid) as memory, httpx.stream("GET", f"{gw.url}/bytes/{SIZE}",
                                                     timeout=30) as response:
        assert response.status_code == 200
        for data in response.iter_raw():
            received.update(data)
            length += len(data)
    assert length == SIZE
    assert received.hexdigest() == hashlib.sha256(pattern(SIZE)).hexdigest()
    assert memory.samples > 10
    assert memory.growth < MAX_GROWTH, f"gateway RSS grew by {memory.growth / 2**20:.1f} MiB"


def test_a_client_that_stops_reading_holds_the_upstream_back_instead_of_filling_memory(gw):
    with Wire(gw.listen, timeout=30) as wire, PeakMemory(gw.pid) as memory:
        wire.send(request("GET", f"/bytes/{SIZE}"))
        time.sleep(1.0)   # not reading: the upstream must be paused, not buffered for
        answer = wire.answer()
    assert answer.status == 200
    assert hashlib.sha256(answer.body).digest() == hashlib.sha256(pattern(SIZE)).digest()
    assert memory.growth < MAX_GROWTH, f"gateway RSS grew by {memory.growth / 2**20:.1f} MiB"
