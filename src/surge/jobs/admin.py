"""The jobs routes of the admin API: `GET /api/jobs/queues` (depth by state and the oldest
job's age, per queue) and `GET /api/jobs/{id}` (one job's record). `add_routes` registers them
on the admin server's router; they read the broker and refresh the jobs gauges as they go."""

from __future__ import annotations

import time

from surge.admin.http import Request, Response, json_response
from surge.admin.router import Router
from surge.errors import NotFound
from surge.jobs.broker import Broker
from surge.jobs.metrics import observe_queues


def add_routes(router: Router, broker: Broker) -> None:
    async def queues(request: Request) -> Response:
        names = await broker.queues()
        return json_response({"queues": await observe_queues(broker, names, time.time())})

    async def job(request: Request) -> Response:
        record = await broker.get(request.params["id"])
        if record is None:
            raise NotFound(f"no job with id {request.params['id']!r} (never enqueued, or its "
                           f"result has expired)")
        return json_response(record.public())

    router.add("GET", "/api/jobs/queues", queues)
    router.add("GET", "/api/jobs/{id}", job)
