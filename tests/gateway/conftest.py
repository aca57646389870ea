"""Fixtures of the gateway's integration tests: the per-test `upstreams` and `gateway`
factories from `support.fixtures`, and `stack`, which starts a fleet and a gateway over it
once for a whole test module (for modules whose tests leave both as they found them)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.fixtures import gateway, upstreams  # noqa: F401  (fixtures, used by name)
from support.processes import (
    GatewayProcess,
    ManagedProcess,
    UpstreamProcess,
    start_gateway,
    start_upstreams,
    stop_all,
)


class Stack:
    """Processes started for one module, stopped together at its end."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[ManagedProcess] = []

    def upstreams(self, n: int, **kwargs: Any) -> list[UpstreamProcess]:
        fleet = start_upstreams(n, self.directory, **kwargs)
        self.started.extend(fleet)
        return fleet

    def gateway(self, config_text: str, **kwargs: Any) -> GatewayProcess:
        process = start_gateway(config_text, self.directory, **kwargs)
        self.started.append(process)
        return process


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    started = Stack(tmp_path_factory.mktemp("stack"))
    yield started
    stop_all(started.started)

