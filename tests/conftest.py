"""Fixtures shared by every test package: where the real Redis and PostgreSQL are.

In CI (`CI=true`) a test that needs Redis or PostgreSQL fails when the server is missing; on a
developer's machine without them it is skipped with the reason."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

import pytest

REDIS_URL = os.environ.get("SURGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get("SURGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _reachable(url: str, default_port: int) -> bool:
    parts = urlparse(url)
    try:
        address = (parts.hostname or "127.0.0.1", parts.port or default_port)
        with socket.create_connection(address, 1):
            return True
    except OSError:
        return False


def _require(url: str, port: int, what: str) -> str:
    if not _reachable(url, port):
        message = f"{what} is not reachable at {url}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must run every test that needs it)")
        pytest.skip(message)
    return url


@pytest.fixture
def redis_url() -> str:
    """A real Redis, database flushed before the test."""
    url = _require(REDIS_URL, 6379, "Redis")
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@pytest.fixture
def postgres_url() -> str:
    return _require(POSTGRES_URL, 5432, "PostgreSQL")
