"""A throwaway Redis for the failure tests: a real `redis-server` on a free port, that a test
may kill and restart on the same port. Stopped at the end of the test whatever happens."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.processes import ManagedProcess, free_port, wait_for_port


class ThrowawayRedis:
    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no"]
        self.process = ManagedProcess(f"redis-{self.port}", argv, log_dir)

    def start(self) -> None:
        self.process.spawn()
        wait_for_port("127.0.0.1", self.port, 5.0)

    def kill(self) -> None:
        self.process.kill9()


@pytest.fixture
def throwaway_redis(tmp_path: Path) -> Iterator[ThrowawayRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = ThrowawayRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.process.terminate()
