"""`gateway.workers: N`: N gateway processes share the listeners (SO_REUSEPORT) under one
master, the process `surge up` started. (The config key, the `worker` label on `/metrics` and
the log lines keep the word users know; in code a worker is a job runner.)

The master keeps them running: each goes through the one process lifecycle that replicas share
(`scaling/lifecycle.py`), and one that dies is replaced after the same restart backoff. It
serves the public admin API and fans its changes out to every gateway process's private admin
port; a replacement gets the admin changes replayed. `/metrics` merges the processes' families,
each sample labelled with its `worker`. It also runs the one supervisor of `process` and
`jobs.workers` replicas and the one autoscaler loop, which see the gateway processes as one
gateway (`scaling/master.py`). SIGTERM drains every gateway process, then stops the replicas;
SIGHUP (or `POST /api/reload`) reloads every gateway process, then reconciles the replicas."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from surge.admin.client import call, raise_for_problem
from surge.admin.server import AdminServer
from surge.app.run import UPSTREAMS_ENV
from surge.config import Config, load
from surge.gateway.ratelimit import RateLimiting, in_use, register_routes
from surge.jobs.gateway import JobsView
from surge.jobs.metrics import QUEUE_GAUGES
from surge.scaling.lifecycle import LIVE, Lifecycle, ProcessState

log = logging.getLogger("surge.workers")  # the name users grep their logs for

S = ProcessState
POLL_INTERVAL = 1.0  # how often the master reads every gateway process's view and metrics
START_TIMEOUT = 15.0  # for a gateway process's private admin port to answer


@dataclass
class GatewayProcess(Lifecycle):
    """One of the master's N gateway processes: slot `index` keeps its private `admin_port`
    while its process is replaced."""

    index: int
    path: Path
    admin_port: int
    child: asyncio.subprocess.Process | None = None  # the running OS process
    view: list[dict[str, Any]] = field(default_factory=list)
    metrics: str = ""

    def __str__(self) -> str:
        return f"gateway process {self.index}"

    async def spawn(self, now: float,
                    upstreams: dict[str, dict[str, int | None]] | None = None) -> None:
        """Start the process; `upstreams` (service -> address -> weight, None for drained) are
        in its first snapshot, before it accepts a connection."""
        self.child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "surge.app.run", str(self.path), str(self.index),
            str(self.admin_port), env={**os.environ, UPSTREAMS_ENV: json.dumps(upstreams or {})})
        self.begin(self.child.pid, now)
        log.info("worker %d started (pid %d)", self.index, self.child.pid)

    @property
    def alive(self) -> bool:
        return self.child is not None and self.child.returncode is None


class Master:
    """The one master of `gateway.workers: N`: it keeps the gateway processes running, and is
    the ControlPlane of the public admin API over them."""

    def __init__(self, config: Config, path: Path, ports: list[int],
                 now: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.path = path
        self.now = now
        self.processes = [GatewayProcess(index=i, path=path, admin_port=port)
                          for i, port in enumerate(ports)]
        # Upstreams added (weight) or drained (None) through the master: replayed into a
        # replacement. One entry per address, however often the autoscaler changes it.
        self.changes: dict[tuple[str, str], int | None] = {}
        self.followers: list[Any] = []  # the supervisor, reconciled on reload
        self.stopping = False
        self.registry = CollectorRegistry()
        self.registry.register(self)  # type: ignore[arg-type]

    # -- ControlPlane ----------------------------------------------------------------------------

    def services_view(self) -> list[dict[str, Any]]:
        """Gateway process 0's view, with in-flight counts summed over all of them (matched by
        service name and upstream address: one mid-reload may list them differently)."""
        views = [p.view for p in self.processes if p.view]
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
        """Every gateway process re-reads the file, then the replicas follow it; the supervisor
        may refuse it first (a command not found), the gateway processes too (they read the
        same file)."""
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
        return [p.admin_port for p in self.processes if p.alive]

    def metrics_text(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def collect(self):  # type: ignore[no-untyped-def]
        """Every gateway process's families, merged by name, each sample labelled with its
        index (label `worker`, as users know it)."""
        families: dict[str, Any] = {}
        for process in self.processes:
            for family in text_string_to_metric_families(process.metrics):
                merged = families.setdefault(family.name, family)
                if merged is not family:
                    merged.samples.extend(_labelled(family.samples, process.index))
                else:
                    family.samples = _labelled(family.samples, process.index)
        yield from families.values()

    async def fan_out(self, method: str, path: str, body: Any = None) -> bytes:
        """Send one admin change to every live gateway process; the first refusal is raised."""
        answers = await asyncio.gather(*(call(p.admin_port, method, path, body)
                                         for p in self.processes if p.alive))
        for status, content in answers:
            raise_for_problem(status, content)
        return answers[0][1] if answers else b"{}"

    # -- supervision -----------------------------------------------------------------------------

    async def start(self, process: GatewayProcess) -> None:
        """starting -> ready: spawn it, wait for its private admin port, replay the changes
        made through the master (a first start has none), read its view."""
        await process.spawn(self.now(), self.upstreams())
        if await self.answers(process) and process.state is S.STARTING:
            process.move(S.READY, self.now())
            await self.replay(process)
        await self.poll(process)

    async def answers(self, process: GatewayProcess) -> bool:
        """Whether its private admin port answers within START_TIMEOUT; False at once when the
        process exits first (replacing it is then `keep`'s business, without waiting)."""
        deadline = self.now() + START_TIMEOUT
        while process.alive and self.now() < deadline:
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", process.admin_port)
                writer.close()
                return True
            await asyncio.sleep(0.05)
        return False

    async def keep(self, process: GatewayProcess) -> None:
        """Keep one started gateway process running: when it exits unasked, replace it after
        the shared restart backoff (`lifecycle.py`), until the master stops."""
        assert process.child is not None
        while True:
            code = await process.child.wait()
            if self.stopping:
                return
            delay = process.exited(code, self.now(), expected=False)
            log.error("worker %d exited (%s); replacing it in %.1fs", process.index, code, delay)
            await asyncio.sleep(delay or 0.0)
            if self.stopping:
                process.move(S.EXITED, self.now())
                return
            try:
                await self.start(process)
            except Exception:  # a bug here must not end this slot's supervision for good
                log.exception("worker %d: starting its replacement failed", process.index)

    async def watch(self) -> None:
        """Read every gateway process's view and metrics, once a POLL_INTERVAL."""
        while not self.stopping:
            await self.refresh()
            await asyncio.sleep(POLL_INTERVAL)

    async def replay(self, process: GatewayProcess) -> None:
        for (service, address), weight in list(self.changes.items()):
            if weight is not None:
                method, path = "POST", f"/api/services/{service}/upstreams"
            elif address in self.configured(service):
                method, path = "DELETE", f"/api/services/{service}/upstreams/{address}"
            else:
                continue  # drained, and a new gateway process never had it
            try:
                await call(process.admin_port, method, path,
                           {"address": address, "weight": weight} if weight is not None else None)
            except (OSError, TimeoutError) as exc:
                log.warning("worker %d: could not replay %s %s: %s", process.index, method,
                            path, exc)

    def upstreams(self) -> dict[str, dict[str, int | None]]:
        """The changes made through the master, as a gateway process's gateway keeps them."""
        nested: dict[str, dict[str, int | None]] = {}
        for (service, address), weight in self.changes.items():
            nested.setdefault(service, {})[address] = weight
        return nested

    def configured(self, service: str) -> set[str]:
        spec = self.config.services.get(service)
        return {u.address for u in spec.upstreams} if spec is not None else set()

    async def refresh(self) -> None:
        """Read every gateway process's view now, so a read after a change through the master
        sees it (the background poll alone would show it up to POLL_INTERVAL late)."""
        await asyncio.gather(*(self.poll(p) for p in self.processes))

    async def poll(self, process: GatewayProcess) -> None:
        if not process.alive:
            return
        try:
            status, content = await call(process.admin_port, "GET", "/api/services")
            if status == 200:
                process.view = json.loads(content)["services"]
            status, content = await call(process.admin_port, "GET", "/metrics")
            if status == 200:
                process.metrics = content.decode()
        except (OSError, TimeoutError, ValueError):
            pass  # starting or stopping; the next poll will tell

    async def stop(self, drain: float) -> None:
        """SIGTERM every gateway process (each drains its requests), SIGKILL what still runs
        `drain` + 5 seconds later."""
        self.stopping = True
        log.info("stopping %d workers (drain up to %gs)", len(self.processes), drain)
        for process in self.processes:
            if process.alive and process.state in LIVE:
                process.move(S.STOPPING, self.now())
            self.signal(process, signal.SIGTERM)
        deadline = self.now() + drain + 5
        while any(p.alive for p in self.processes) and self.now() < deadline:
            await asyncio.sleep(0.1)
        for process in self.processes:
            self.signal(process, signal.SIGKILL)
            if process.child is not None:
                code = await process.child.wait()
                if process.state is not S.EXITED:
                    process.exited(code, self.now(), expected=True)

    @staticmethod
    def signal(process: GatewayProcess, signum: int) -> None:
        if process.child is not None and process.alive:
            process.child.send_signal(signum)


def _labelled(samples: list[Any], index: int) -> list[Any]:
    return [s._replace(labels={**s.labels, "worker": str(index)}) for s in samples]


def run_master(config: Config, path: Path, on_ready: Callable[[], None] | None = None) -> int:
    return uvloop.run(serve_master(config, path, on_ready))


async def serve_master(config: Config, path: Path,
                       on_ready: Callable[[], None] | None = None) -> int:
    """Run the gateway processes until SIGTERM/SIGINT; `on_ready` is called once they listen (each
    binds the listeners before its admin port) and the public admin API does too."""
    from surge.app.run import reload
    from surge.ports import free_ports
    from surge.scaling.control import start_scaling
    from surge.scaling.master import MasterMembership

    loop = asyncio.get_running_loop()
    master = Master(config, Path(path).resolve(), free_ports(config.gateway.workers))
    await asyncio.gather(*(master.start(p) for p in master.processes))
    admin = None
    # Keys live in the shared state store, so the master serves them too; a key's counts are
    # the gateway processes' own with `state: local`, and shared with Redis.
    limiting = RateLimiting(config, master.path.parent) if in_use(config) else None
    if config.gateway.admin:
        host, _, port = config.gateway.admin.rpartition(":")
        admin = AdminServer(master, host.strip("[]"), int(port))
        register_routes(admin.router, lambda: limiting)
    # The master reads the job queues (their depth on /metrics, /api/jobs), not each process.
    jobs = JobsView.from_config(config, admin.router if admin is not None else None)
    for gauge in QUEUE_GAUGES if jobs is not None else ():
        master.registry.register(gauge)
    if admin is not None:
        await admin.start()
    # The gateway processes listen: replicas can join them.
    scaling = await start_scaling(MasterMembership(master), config, master.registry,
                                  admin.router if admin is not None else None)
    master.followers.append(scaling)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(reload(master)))
    tasks = [loop.create_task(master.watch()),
             *(loop.create_task(master.keep(p)) for p in master.processes)]
    if on_ready is not None:
        on_ready()
    await stop.wait()
    for task in tasks:
        task.cancel()
    await master.stop(config.gateway.drain)
    await scaling.stop()  # replicas stop once the gateway processes have finished their requests
    if admin is not None:
        await admin.close()
    if limiting is not None:
        await limiting.close()
    if jobs is not None:
        await jobs.close()
    return 0
