"""The support fixtures, and one fleet of two replicas shared by a whole test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.fixtures import gateway, upstreams  # noqa: F401  (fixtures, used by name)
from support.processes import UpstreamProcess, start_upstreams, stop_all


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[UpstreamProcess]]:
    record_dir = tmp_path_factory.mktemp("fleet")
    started = start_upstreams(2, record_dir, names=["a", "b"],
                              env={"UPSTREAM_RECORD_FILE": str(record_dir / "record.jsonl")})
    yield started
    stop_all(started)
