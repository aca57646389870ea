"""With a `jobs` section, the gateway's admin API shows the queues and each job, and /metrics
carries the queue depth: the same broker the workers use, read by the gateway process."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from gateway.stack import eventually, metric, service, surge_yaml, with_changes
from surge.jobs import Queue

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("workers", [1, 2])
def test_the_admin_api_shows_job_queues_and_jobs(upstreams, gateway, tmp_path, workers):
    (a,) = upstreams(1)
    db = tmp_path / "jobs.db"

    def add_jobs(doc: dict) -> None:
        doc["jobs"] = {"broker": f"sqlite:///{db}", "queues": {"default": {}}}
        doc["gateway"]["workers"] = workers  # with 2, the master answers the admin API

    gw = gateway(with_changes(surge_yaml({"app": service([a])},
                                         [{"prefix": "/", "service": "app"}]), add_jobs))

    async def enqueue() -> str:
        queue = Queue.from_url(f"sqlite:///{db}")

        @queue.job()
        async def send_email(to: str) -> None: ...

        job = await send_email.enqueue("a@example.com")
        await queue.close()
        return job.id

    job_id = asyncio.run(enqueue())
    queues = httpx.get(f"{gw.admin_url}/api/jobs/queues", timeout=5).json()["queues"]
    assert queues["default"]["depth"]["queued"] == 1
    record = httpx.get(f"{gw.admin_url}/api/jobs/{job_id}", timeout=5).json()
    assert record["id"] == job_id
    missing = httpx.get(f"{gw.admin_url}/api/jobs/nope", timeout=5)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    eventually(lambda: metric(gw.admin_url, "surge_jobs_depth", queue="default",
                              state="queued") == 1, timeout=10, what="queue depth on /metrics")
