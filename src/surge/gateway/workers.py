"""`workers: N`: N gateway processes share the listeners (SO_REUSEPORT) under one master.

The master supervises them (a worker that dies is replaced, with backoff), serves the public
admin API and fans its changes out to every worker's private admin port; a replaced worker
gets the admin changes replayed. `/metrics` merges the workers' families, each sample labelled
with its `worker`. It also runs the one supervisor of `process` and `jobs.workers` replicas and
the one autoscaler loop, which see the workers as one gateway (`scaling/master.py`).
SIGTERM drains every worker, then stops the replicas; SIGHUP (or `POST /api/reload`) reloads
every worker, then reconciles the replicas."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvloop
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from surge.admin.client import call, raise_for_problem
from surge.admin.server import AdminServer
from surge.config import Config, load
from surge.gateway.ratelimit import RateLimiting, in_use, register_routes
from surge.gateway.readiness import wait_for_port
from surge.gateway.run import UPSTREAMS_ENV
from surge.jobs.gateway import JobsView
from surge.jobs.metrics import QUEUE_GAUGES

log = logging.getLogger("surge.workers")

POLL_INTERVAL = 1.0
MAX_BACKOFF = 30.0


class Worker:
    def __init__(self, index: int, path: Path, admin_port: int) -> None:
        self.index = index
        self.path = path
        self.admin_port = admin_port
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.started = 0.0
        self.view: list[dict[str, Any]] = []
        self.metrics = ""

    def spawn(self, upstreams: dict[str, dict[str, int | None]] | None = None) -> None:
        """Start the process; `upstreams` (service -> address -> weight, None for drained) are
        in its first snapshot, before it accepts a connection."""
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "surge.gateway.run", str(self.path), str(self.index),
             str(self.admin_port)], env={**os.environ, UPSTREAMS_ENV: json.dumps(upstreams or {})})
        log.info("worker %d started (pid %d)", self.index, self.process.pid)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Master:
    """The ControlPlane of the public admin API when several workers run."""

    def __init__(self, config: Config, path: Path, ports: list[int]) -> None:
        self.config = config
        self.path = path
        self.workers = [Worker(i, path, port) for i, port in enumerate(ports)]
        # Upstreams added (weight) or drained (None) through the master: replayed into a
        # replaced worker. One entry per address, however often the autoscaler changes it.
        self.changes: dict[tuple[str, str], int | None] = {}
        self.followers: list[Any] = []  # the supervisor, reconciled on reload
        self.stopping = False
        self.registry = CollectorRegistry()
        self.registry.register(self)  # type: ignore[arg-type]

    # -- ControlPlane ----------------------------------------------------------------------------

    def services_view(self) -> list[dict[str, Any]]:
        """Worker 0's view, with in-flight counts summed over all workers (matched by service
        name and upstream address: a worker mid-reload may list them differently)."""
        views = [w.view for w in self.workers if w.view]
        if not views:
            return []
        merged = json.loads(json.dumps(views[0]))
        by_address = {(s["name"], u["address"]): u for s in merged for u in s["upstreams"]}
        for other in views[1:]:
            for service in other:
                for theirs in service["upstreams"]:
                    ours = by_address.get((service["name"], theirs["address"]))
                    if ours is not None:
                        ours["inflight"] += theirs["inflight"]
        return merged

    async def add_upstream(self, service: str, address: str, weight: int) -> dict[str, Any]:
        body = {"address": address, "weight": weight}
        result = await self.fan_out("POST", f"/api/services/{service}/upstreams", body)
        self.changes[service, address] = weight
        await self.refresh()
        return json.loads(result)

    async def remove_upstream(self, service: str, address: str) -> None:
        await self.fan_out("DELETE", f"/api/services/{service}/upstreams/{address}")
        self.changes[service, address] = None
        await self.refresh()

    async def reload(self) -> dict[str, Any]:
        """Every worker re-reads the file, then the replicas follow it; the supervisor may
        refuse it first (a command not found), the workers too (they read the same file)."""
        config = await asyncio.get_running_loop().run_in_executor(None, load, self.path)
        for follower in self.followers:
            follower.check(config)
        result = json.loads(await self.fan_out("POST", "/api/reload"))
        self.config = config
        self.changes = {k: v for k, v in self.changes.items() if k[0] in config.services}
        await self.refresh()
        for follower in self.followers:
            await follower.reconcile(config)
        return result

    def admin_ports(self) -> list[int]:
        return [w.admin_port for w in self.workers if w.alive]

    def metrics_text(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def collect(self):  # type: ignore[no-untyped-def]
        """Every worker's families, merged by name, each sample labelled with its worker."""
        families: dict[str, Any] = {}
        for worker in self.workers:
            for family in text_string_to_metric_families(worker.metrics):
                merged = families.setdefault(family.name, family)
                if merged is not family:
                    merged.samples.extend(_labelled(family.samples, worker.index))
                else:
                    family.samples = _labelled(family.samples, worker.index)
        yield from families.values()

    # -- supervision -----------------------------------------------------------------------------

    async def fan_out(self, method: str, path: str, body: Any = None) -> bytes:
        """Send one admin change to every live worker; the first refusal is raised."""
        answers = await asyncio.gather(*(call(w.admin_port, method, path, body)
                                         for w in self.workers if w.alive))
        for status, content in answers:
            raise_for_problem(status, content)
        return answers[0][1] if answers else b"{}"

    async def supervise(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.stopping:
            for worker in self.workers:
                if worker.restarts and worker.alive and time.monotonic() - worker.started > 60:
                    worker.restarts = 0  # a minute up: the next crash starts the backoff anew
                if not worker.alive and not self.stopping:
                    code = worker.process.returncode if worker.process else None
                    delay = min(MAX_BACKOFF, 0.5 * 2 ** worker.restarts)
                    log.error("worker %d exited (%s); replacing it in %.1fs", worker.index,
                              code, delay)
                    worker.restarts += 1
                    await asyncio.sleep(delay)
                    worker.spawn(self.upstreams())
                    ok = await loop.run_in_executor(None, wait_for_port, "127.0.0.1",
                                                    worker.admin_port, 15.0)
                    if ok:
                        await self.replay(worker)
                await self.poll(worker)
            await asyncio.sleep(POLL_INTERVAL)

    async def replay(self, worker: Worker) -> None:
        for (service, address), weight in list(self.changes.items()):
            if weight is not None:
                method, path = "POST", f"/api/services/{service}/upstreams"
            elif address in self.configured(service):
                method, path = "DELETE", f"/api/services/{service}/upstreams/{address}"
            else:
                continue  # drained, and a new worker never had it
            try:
                await call(worker.admin_port, method, path,
                           {"address": address, "weight": weight} if weight is not None else None)
            except (OSError, TimeoutError) as exc:
                log.warning("worker %d: could not replay %s %s: %s", worker.index, method,
                            path, exc)

    def upstreams(self) -> dict[str, dict[str, int | None]]:
        """The changes made through the master, as a worker's gateway keeps them."""
        nested: dict[str, dict[str, int | None]] = {}
        for (service, address), weight in self.changes.items():
            nested.setdefault(service, {})[address] = weight
        return nested

    def configured(self, service: str) -> set[str]:
        spec = self.config.services.get(service)
        return {u.address for u in spec.upstreams} if spec is not None else set()

    async def refresh(self) -> None:
        """Read every worker's view now, so a read after a change through the master sees it
        (the background poll alone would show it up to POLL_INTERVAL late)."""
        await asyncio.gather(*(self.poll(w) for w in self.workers))

    async def poll(self, worker: Worker) -> None:
        if not worker.alive:
            return
        try:
            status, content = await call(worker.admin_port, "GET", "/api/services")
            if status == 200:
                worker.view = json.loads(content)["services"]
            status, content = await call(worker.admin_port, "GET", "/metrics")
            if status == 200:
                worker.metrics = content.decode()
        except (OSError, TimeoutError, ValueError):
            pass  # starting or stopping; the next poll will tell

    def signal_all(self, signum: int) -> None:
        for worker in self.workers:
            if worker.alive:
                worker.process.send_signal(signum)  # type: ignore[union-attr]


def _labelled(samples: list[Any], index: int) -> list[Any]:
    return [s._replace(labels={**s.labels, "worker": str(index)}) for s in samples]


def run_master(config: Config, path: Path, on_ready: Callable[[], None] | None = None) -> int:
    return uvloop.run(serve_master(config, path, on_ready))


async def serve_master(config: Config, path: Path,
                       on_ready: Callable[[], None] | None = None) -> int:
    """Run the workers until SIGTERM/SIGINT; `on_ready` is called once they listen (each
    binds the listeners before its admin port) and the public admin API does too."""
    from surge.gateway.run import free_ports, reload
    from surge.scaling.control import start_scaling
    from surge.scaling.master import WorkersMembership

    loop = asyncio.get_running_loop()
    master = Master(config, Path(path).resolve(), free_ports(config.gateway.workers))
    for worker in master.workers:
        worker.spawn()
    for worker in master.workers:
        await loop.run_in_executor(None, wait_for_port, "127.0.0.1", worker.admin_port, 15.0)
        await master.poll(worker)
    admin = None
    # Keys live in the shared state store, so the master serves them too; a key's counts are
    # the workers' own with `state: local`, and shared with Redis.
    limiting = RateLimiting(config, master.path.parent) if in_use(config) else None
    if config.gateway.admin:
        host, _, port = config.gateway.admin.rpartition(":")
        admin = AdminServer(master, host.strip("[]"), int(port))
        register_routes(admin.router, lambda: limiting)
    # The master reads the job queues (their depth on /metrics, /api/jobs), not each worker.
    jobs = JobsView.from_config(config, admin.router if admin is not None else None)
    for gauge in QUEUE_GAUGES if jobs is not None else ():
        master.registry.register(gauge)
    if admin is not None:
        await admin.start()
    # The workers listen: replicas can join them.
    scaling = await start_scaling(WorkersMembership(master), config, master.registry,
                                  admin.router if admin is not None else None)
    master.followers.append(scaling)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(reload(master)))
    watching = loop.create_task(master.supervise())
    if on_ready is not None:
        on_ready()
    await stop.wait()
    master.stopping = True
    watching.cancel()
    log.info("stopping %d workers (drain up to %gs)", len(master.workers), config.gateway.drain)
    master.signal_all(signal.SIGTERM)
    deadline = loop.time() + config.gateway.drain + 5
    while any(w.alive for w in master.workers) and loop.time() < deadline:
        await asyncio.sleep(0.1)
    master.signal_all(signal.SIGKILL)
    await scaling.stop()  # replicas stop once the workers have finished their requests
    if admin is not None:
        await admin.close()
    if limiting is not None:
        await limiting.close()
    if jobs is not None:
        await jobs.close()
    return 0

