"""The jobs routes of the admin API, resolved by the admin router over a memory broker."""

from __future__ import annotations

import json
import time

import pytest

from surge.admin.http import Request
from surge.admin.router import Router
from surge.errors import NotFound
from surge.jobs.admin import add_routes
from surge.jobs.memory import MemoryBroker
from surge.jobs.record import JobRecord


async def get(router: Router, path: str) -> dict:
    match = router.resolve("GET", path)
    request = Request("GET", path, {}, {}, b"", params=match.params)
    return json.loads((await match.handler(request)).body)


async def test_queues_show_depth_by_state_and_the_oldest_age():
    broker, router = MemoryBroker(), Router()
    add_routes(router, broker)
    now = time.time()
    await broker.enqueue(JobRecord("send", queue="emails", created_at=now - 5, run_at=now - 5))
    body = await get(router, "/api/jobs/queues")
    assert body["queues"]["emails"]["depth"]["queued"] == 1
    assert body["queues"]["emails"]["oldest_age"] >= 5


async def test_a_job_is_readable_by_id_and_an_unknown_id_is_404():
    broker, router = MemoryBroker(), Router()
    add_routes(router, broker)
    stored = await broker.enqueue(JobRecord("send", args=["a@example.com"]))
    body = await get(router, f"/api/jobs/{stored.id}")
    assert (body["id"], body["name"], body["state"], body["args"]) == (
        stored.id, "send", "queued", ["a@example.com"])
    with pytest.raises(NotFound):
        await get(router, "/api/jobs/nope")
