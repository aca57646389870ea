"""Pytest fixtures over `support.processes`: every process a test starts is stopped at its end.

Use them by importing into a conftest (`from support.fixtures import upstreams, gateway`) or
with `pytest_plugins = ["support.fixtures"]` in the root conftest.

    def test_failover(upstreams, gateway):
        fleet = upstreams(2)
        gw = gateway(config_for(fleet))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.processes import (
    GatewayProcess,
    ManagedProcess,
    UpstreamProcess,
    start_gateway,
    start_upstreams,
    stop_all,
)


@pytest.fixture
def upstreams(tmp_path: Path) -> Iterator[Callable[..., list[UpstreamProcess]]]:
    """`upstreams(n, env=..., names=...)` starts a fleet; all of it stops after the test."""
    started: list[ManagedProcess] = []

    def start(n: int, **kwargs: Any) -> list[UpstreamProcess]:
        fleet = start_upstreams(n, tmp_path, **kwargs)
        started.extend(fleet)
        return fleet

    yield start
    stop_all(started)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    """`gateway(config_text, env=..., name=...)` runs `surge up`; stopped after the test."""
    started: list[ManagedProcess] = []

    def start(config_text: str, **kwargs: Any) -> GatewayProcess:
        process = start_gateway(config_text, tmp_path, **kwargs)
        started.append(process)
        return process

    yield start
    stop_all(started)
