"""Fixtures for the config tests: parse a YAML text and get its problems back."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from surge.config import parse
from surge.errors import ConfigError

BASE = """
services:
  api:
    upstreams: [127.0.0.1:8101]
routes:
  - {prefix: /, service: api}
"""


def _problems_of(text: str, **options) -> list[str]:
    try:
        parse(text, **options)
    except ConfigError as error:
        return error.problems
    return []


@pytest.fixture
def problems() -> Callable[..., list[str]]:
    """`problems(text, env=..., check_support=...)`: the ConfigError lines, [] if valid."""
    return _problems_of
