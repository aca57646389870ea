"""Fixtures for the admin API tests: an in-memory control plane, a started server on a free
port, and an httpx client talking to it over a real socket."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator

import httpx
import pytest

from surge.admin import AdminServer, Limits
from surge.errors import ClientError, ConfigError, NotFound

METRICS = b"# TYPE surge_requests_total counter\nsurge_requests_total 3\n"
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def upstream_view(address: str, weight: int = 1) -> dict:
    return {"address": address, "weight": weight, "healthy": True, "ejected": False,
            "draining": False, "inflight": 0}


class FakeControl:
    """The ControlPlane as the admin API sees it, kept in a dict."""

    def __init__(self) -> None:
        self.services = {"api": {"name": "api", "balance": "p2c",
                                 "upstreams": [upstream_view("127.0.0.1:8101")]}}
        self.reload_problems: list[str] = []
        self.reloads = 0

    def services_view(self) -> list[dict]:
        return copy.deepcopy(list(self.services.values()))

    async def add_upstream(self, service: str, address: str, weight: int) -> dict:
        upstreams = self._service(service)["upstreams"]
        if any(upstream["address"] == address for upstream in upstreams):
            raise ClientError(f"{service} already has upstream {address}")
        upstreams.append(upstream_view(address, weight))
        return upstream_view(address, weight)

    async def remove_upstream(self, service: str, address: str) -> None:
        for upstream in self._service(service)["upstreams"]:
            if upstream["address"] == address:
                upstream["draining"] = True
                return
        raise NotFound(f"{service} has no upstream {address}")

    async def reload(self) -> dict:
        await asyncio.sleep(0)
        if self.reload_problems:
            raise ConfigError(self.reload_problems)
        self.reloads += 1
        return {"services": len(self.services), "changed": []}

    def metrics_text(self) -> tuple[bytes, str]:
        return METRICS, METRICS_TYPE

    def _service(self, name: str) -> dict:
        if name not in self.services:
            raise NotFound(f"no service {name!r}")
        return self.services[name]


@pytest.fixture
def control() -> FakeControl:
    return FakeControl()


@pytest.fixture
def limits() -> Limits:
    return Limits()


@pytest.fixture
async def server(control: FakeControl, limits: Limits) -> AsyncIterator[AdminServer]:
    admin = AdminServer(control, "127.0.0.1", 0, limits=limits)
    await admin.start()
    yield admin
    await admin.close()


@pytest.fixture
async def client(server: AdminServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
        yield http
