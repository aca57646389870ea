"""Background jobs as the gateway process sees them: with a `jobs` section in surge.yaml, the
admin API serves `GET /api/jobs/queues` and `GET /api/jobs/{id}`, and the queue depth and
oldest-job gauges on `/metrics` are refreshed every few seconds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from surge.admin.router import Router
from surge.errors import BrokerError
from surge.jobs.admin import add_routes
from surge.jobs.broker import Broker, broker_from_url
from surge.jobs.metrics import observe_queues
from surge.masking import mask_credentials

log = logging.getLogger("surge.jobs")

REFRESH = 5.0


class JobsView:
    def __init__(self, broker: Broker, queues: tuple[str, ...]) -> None:
        self.broker = broker
        self.queues = queues
        self.task: asyncio.Task[None] | None = None

    @classmethod
    def from_config(cls, config: Any, router: Router | None) -> JobsView | None:
        if config.jobs is None:
            return None
        view = cls(broker_from_url(config.jobs.broker), tuple(config.jobs.queues))
        if router is not None:
            add_routes(router, view.broker)
        view.task = asyncio.get_running_loop().create_task(view.refresh())
        return view

    async def refresh(self) -> None:
        failures = 0
        while True:
            try:
                await observe_queues(self.broker, self.queues, time.time())
                failures = 0
            except (BrokerError, OSError) as exc:
                failures += 1
                if failures == 1:
                    log.warning("job queue depth unavailable (broker %s): %s",
                                mask_credentials(self.broker.url), exc)
            await asyncio.sleep(REFRESH)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.broker.close()
