"""The supervisor: runs the replica processes of `services.NAME.process` and `jobs.workers.NAME`,
one asyncio task per replica slot driving its state machine (`replica.py`).

A service replica gets a free port (`{port}` in its command, `PORT` in its env), its output is
logged line by line under its name, and it joins the gateway (`add_upstream`) only once its
own health check passes; the gateway then warms it. An unexpected exit is replaced in the same
slot after a backoff that grows with rapid failures. Scale-in and rolling restarts drain first:
`remove_upstream`, in-flight requests finish (up to `gateway.drain`), SIGTERM, SIGKILL after
`grace`. Worker replicas have no port and no gateway: they are ready once started.
Deciding how many replicas to run is the autoscaler's business (`loop.py`), never this one's."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shlex
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from surge.errors import ClientError, ConfigError, NotFound, SurgeError
from surge.gateway.run import free_ports
from surge.scaling.metrics import EventLog
from surge.scaling.replica import LIVE, Replica, ReplicaState
from surge.upstreams.health import expect_ok
from surge.upstreams.prober import probe
from surge.upstreams.upstream import Upstream

log = logging.getLogger("surge.supervisor")
output_log = logging.getLogger("surge.replica")

S = ReplicaState
POLL = 0.05            # how often a slot looks at its process, health and drain
START_TIMEOUT = 60.0   # a replica not healthy by then is killed and counts as a failure
STOP_GRACE = 10.0      # SIGTERM to SIGKILL
READ_SIZE = 64 * 1024  # of replica output, when a line does not fit the buffer
PR_SET_PDEATHSIG = 1
VICTIM_ORDER = (S.BACKOFF, S.STARTING, S.WARMING, S.READY)  # scale-in takes these first


@dataclass(frozen=True)
class GroupSpec:
    """What to run for one service (`gateway=True`: registered as upstreams) or worker group."""

    name: str
    command: str
    env: dict[str, str] = field(default_factory=dict)
    replicas: int = 1
    gateway: bool = True
    health_path: str | None = None
    health_timeout: float = 1.0
    health_expect: Any = None


def groups_from_config(config: Any) -> list[GroupSpec]:
    """The replica groups a Config asks for: services with `process`, then `jobs.workers`."""
    groups = []
    for name, service in config.services.items():
        if service.process is None:
            continue
        health = service.health
        groups.append(GroupSpec(
            name, service.process.command, dict(service.process.env),
            _initial(service.process.replicas, service.scaling),
            health_path=health.path if health else None,
            health_timeout=health.timeout if health else 1.0,
            health_expect=health.expect if health else None))
    for name, worker in (config.jobs.workers if config.jobs else {}).items():
        groups.append(GroupSpec(name, worker.command, {}, _initial(worker.replicas,
                                                                   worker.scaling),
                                gateway=False))
    return groups


def _initial(replicas: int, scaling: Any) -> int:
    return replicas if scaling is None else min(max(replicas, scaling.min), scaling.max)


class Slot:
    """One replica slot: its state machine, its task and the signal to retire it."""

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.retire = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.process: asyncio.subprocess.Process | None = None
        self.pumps: list[asyncio.Task[None]] = []  # its output, line by line into the log


class Group:
    def __init__(self, spec: GroupSpec) -> None:
        self.spec = spec
        self.replicas: dict[str, Replica] = {}
        self.slots: dict[str, Slot] = {}
        self.next_index = 1
        self.restarting = False

    @property
    def active(self) -> list[Slot]:
        """Slots that count towards the replica count: not asked to retire."""
        return [s for s in self.slots.values() if not s.retire.is_set()]


class Supervisor:
    def __init__(self, gateway: Any, groups: list[GroupSpec], *, drain: float = 30.0,
                 grace: float = STOP_GRACE, events: EventLog | None = None,
                 now: Callable[[], float] = time.monotonic) -> None:
        check_commands(groups)
        self.gateway = gateway
        self.groups = {spec.name: Group(spec) for spec in groups}
        self.drain = drain
        self.grace = grace
        self.events = events or EventLog()
        self.now = now

    async def start(self) -> None:
        """Start every group's initial replicas (returns at once; they warm on their own)."""
        for name, group in self.groups.items():
            await self.scale(name, group.spec.replicas, reason="initial replicas")

    async def stop(self) -> None:
        """Drain and stop every replica; returns once all have exited."""
        slots = [s for g in self.groups.values() for s in g.slots.values()]
        for slot in slots:
            slot.retire.set()
        await asyncio.gather(*(s.task for s in slots if s.task), return_exceptions=True)

    # -- scaling ---------------------------------------------------------------------------------

    def count(self, name: str) -> int:
        return len(self.group(name).active)

    async def scale(self, name: str, desired: int, reason: str = "") -> None:
        """Bring the group to `desired` replicas: new slots start, surplus ones drain and stop."""
        group = self.group(name)
        active = group.active
        for _ in range(desired - len(active)):
            self._add_slot(group)
        for slot in pick_victims(active, len(active) - desired):
            self._retire(group, slot, reason or "scale-in")

    async def restart(self, name: str) -> dict[str, Any]:
        """Rolling restart: for each old replica, one new replica becomes ready before the old
        one drains (max surge 1, max unavailable 0). ClientError if one is already running."""
        group = self.group(name)
        if group.restarting:
            raise ClientError(f"a rolling restart of '{name}' is already running")
        group.restarting = True
        old = list(group.active)
        self.events.record(name, "restart", f"rolling restart of {len(old)} replicas")
        try:
            for slot in old:
                new = self._add_slot(group)
                await self._until_ready(group, new)
                if not slot.retire.is_set():
                    self._retire(group, slot, "rolling restart")
        finally:
            group.restarting = False
        return {"service": name, "replaced": len(old)}

    async def _until_ready(self, group: Group, slot: Slot) -> None:
        while slot.replica.state is not S.READY:
            replica = slot.replica
            if replica.state is S.BACKOFF or slot.retire.is_set():
                self._retire(group, slot, "rolling restart aborted")
                raise SurgeError(f"rolling restart of '{group.spec.name}' stopped: the new "
                                 f"replica {replica.name} exited with {replica.exit_code}; "
                                 f"the old replicas keep serving")
            await asyncio.sleep(POLL)

    def group(self, name: str) -> Group:
        group = self.groups.get(name)
        if group is None:
            raise NotFound(f"no supervised service or worker named '{name}'")
        return group

    def _add_slot(self, group: Group) -> Slot:
        name = f"{group.spec.name}-{group.next_index}"
        group.next_index += 1
        replica = Replica(group.spec.name, name, changed_at=self.now())
        slot = Slot(replica)
        group.replicas[name] = replica
        group.slots[name] = slot
        slot.task = asyncio.get_running_loop().create_task(self._run(group, slot))
        return slot

    def _retire(self, group: Group, slot: Slot, reason: str) -> None:
        slot.retire.set()
        self.events.record(group.spec.name, "retire", f"{slot.replica.name}: {reason}",
                           replica=slot.replica.name)

    # -- one slot --------------------------------------------------------------------------------

    async def _run(self, group: Group, slot: Slot) -> None:
        replica = slot.replica
        try:
            while not slot.retire.is_set():
                code = await self._life(group, slot)
                if code is None:  # retired while running: drained and stopped
                    break
                delay = replica.exited(code, self.now(), expected=False)
                assert delay is not None
                kind = "crash_loop" if replica.crash_looping else "exited"
                self.events.record(group.spec.name, kind, f"{replica.name} exited with {code}; "
                                   f"restarting in {delay:g}s", replica=replica.name,
                                   exit_code=code, failures=replica.failures)
                log.warning("%s exited with %s; restart %d in %gs%s", replica.name, code,
                            replica.failures, delay, " (crash loop)" * replica.crash_looping)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(slot.retire.wait(), delay)
            if replica.state is S.BACKOFF:
                replica.move(S.EXITED, self.now())
        except Exception:
            log.exception("supervising %s failed", replica.name)
            if slot.process is not None:
                await self._terminate(slot)
        finally:
            group.slots.pop(replica.name, None)
            group.replicas.pop(replica.name, None)

    async def _life(self, group: Group, slot: Slot) -> int | None:
        """Run one process in the slot until it exits (its code) or is retired (None)."""
        replica, spec = slot.replica, group.spec
        port = free_ports(1)[0] if spec.gateway else None
        process = await self._spawn(spec, replica, port)
        slot.process = process
        slot.pumps = [asyncio.get_running_loop().create_task(_pump(replica.name, stream))
                      for stream in (process.stdout, process.stderr)]
        replica.started(process.pid, port, self.now())
        self.events.record(spec.name, "started", f"{replica.name} started (pid {process.pid}"
                           + (f", port {port})" if port else ")"), replica=replica.name)
        if not spec.gateway:
            replica.move(S.READY, self.now())
        elif await self._become_ready(group, slot) is not None:
            return await self._exited(group, slot)
        while process.returncode is None and not slot.retire.is_set():
            replica.settle(self.now())
            await self._wait(slot, 1.0)
        if process.returncode is not None:
            return await self._exited(group, slot)
        await self._drain(group, slot)
        code = await self._terminate(slot)
        replica.exited(code, self.now(), expected=True)
        self.events.record(spec.name, "stopped", f"{replica.name} stopped ({code})",
                           replica=replica.name)
        return None

    async def _become_ready(self, group: Group, slot: Slot) -> str | None:
        """starting -> warming -> ready; None when ready, or why not (exited, timed out,
        retired: the caller looks at the process)."""
        replica, spec = slot.replica, group.spec
        process = slot.process
        assert process is not None and replica.address is not None
        deadline = self.now() + START_TIMEOUT
        while not await self._healthy(spec, replica.address):
            if process.returncode is not None or slot.retire.is_set():
                return "gone"
            if self.now() > deadline:
                log.error("%s not healthy after %gs: killing it", replica.name, START_TIMEOUT)
                await self._terminate(slot)
                return "timeout"
            await self._wait(slot, 0.1)
        await self.gateway.add_upstream(spec.name, replica.address, 1)
        replica.move(S.WARMING, self.now())
        while not self._upstream_healthy(spec.name, replica.address):
            if process.returncode is not None or slot.retire.is_set():
                return "gone"
            await self._wait(slot, POLL)
        replica.move(S.READY, self.now())
        self.events.record(spec.name, "ready", f"{replica.name} ready at {replica.address}",
                           replica=replica.name)
        return None

    async def _exited(self, group: Group, slot: Slot) -> int | None:
        """The process ended on its own (or was retired before it was ready)."""
        process, replica = slot.process, slot.replica
        assert process is not None
        if slot.retire.is_set():  # never served: nothing to drain
            if replica.state is S.WARMING:
                await self._drain(group, slot)
            code = await self._terminate(slot)
            replica.exited(code, self.now(), expected=True)
            return None
        await self._forget(group.spec.name, replica.address)
        return await process.wait()

    async def _drain(self, group: Group, slot: Slot) -> None:
        """No new requests; wait for in-flight ones (up to `drain`), then SIGTERM."""
        replica = slot.replica
        if replica.state in (S.WARMING, S.READY):
            replica.move(S.DRAINING, self.now())
            up = self._upstream(group.spec.name, replica.address)
            await self._forget(group.spec.name, replica.address)
            deadline = self.now() + self.drain
            while up is not None and up.inflight and self.now() < deadline:
                await asyncio.sleep(POLL)
        replica.move(S.STOPPING, self.now())

    async def _terminate(self, slot: Slot) -> int:
        """SIGTERM the process group, SIGKILL after `grace`; its exit code."""
        process = slot.process
        assert process is not None
        if slot.replica.state in LIVE | {S.DRAINING}:
            slot.replica.move(S.STOPPING, self.now())
        if process.returncode is None:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), self.grace)
            except TimeoutError:
                log.warning("%s ignored SIGTERM for %gs: SIGKILL", slot.replica.name,
                            self.grace)
        _signal_group(process.pid, signal.SIGKILL)  # and whatever it left behind
        return await process.wait()

    async def _spawn(self, spec: GroupSpec, replica: Replica,
                     port: int | None) -> asyncio.subprocess.Process:
        command = spec.command.replace("{port}", str(port)) if port else spec.command
        env = {**os.environ, **spec.env, "SURGE_REPLICA": replica.name}
        if port:
            env["PORT"] = str(port)
        # A session of its own keeps the terminal's Ctrl-C away from replicas (the supervisor
        # drains them first); the parent-death signal takes them down if surge is killed.
        return await asyncio.create_subprocess_exec(
            *shlex.split(command), env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True, preexec_fn=die_with_parent)

    # -- the gateway side ------------------------------------------------------------------------

    async def _healthy(self, spec: GroupSpec, address: str) -> bool:
        target = Upstream(address)
        if spec.health_path is None:
            try:
                async with asyncio.timeout(spec.health_timeout):
                    _, writer = await asyncio.open_connection(target.host, target.port)
            except (OSError, TimeoutError):
                return False
            writer.close()
            return True
        status = await probe(target, spec.health_path, spec.health_timeout)
        return expect_ok(status, spec.health_expect)

    def _upstream(self, service: str, address: str | None) -> Upstream | None:
        runtime = self.gateway.snapshot.services.get(service)
        return runtime.upstreams.get(address) if runtime and address else None

    def _upstream_healthy(self, service: str, address: str) -> bool:
        up = self._upstream(service, address)
        return up is not None and up.healthy

    async def _forget(self, service: str, address: str | None) -> None:
        up = self._upstream(service, address)
        if up is not None and not up.draining and address is not None:
            with contextlib.suppress(NotFound):
                await self.gateway.remove_upstream(service, address)

    async def _wait(self, slot: Slot, seconds: float) -> None:
        """Sleep up to `seconds`, waking early when the process exits or the slot retires."""
        process = slot.process
        assert process is not None
        waits = [asyncio.ensure_future(process.wait()), asyncio.ensure_future(slot.retire.wait())]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()

    # -- views -----------------------------------------------------------------------------------

    def view(self, name: str) -> dict[str, Any]:
        group = self.group(name)
        now = self.now()
        return {
            "kind": "service" if group.spec.gateway else "worker",
            "replicas": len(group.active),
            "restarting": group.restarting,
            "crash_looping": any(r.crash_looping for r in group.replicas.values()),
            "processes": [r.view(now) for r in group.replicas.values()],
        }

    def pids(self, name: str) -> dict[str, int]:
        """Replica name -> pid of each running replica that is ready."""
        return {r.name: r.pid for r in self.group(name).replicas.values()
                if r.pid is not None and r.state is S.READY}


def pick_victims(slots: list[Slot], count: int) -> list[Slot]:
    """The `count` slots to retire: those not serving first, then the newest ready ones."""
    if count <= 0:
        return []
    rank = {state: i for i, state in enumerate(VICTIM_ORDER)}
    ordered = sorted(slots, key=lambda s: (rank.get(s.replica.state, -1),
                                           -s.replica.started_at))
    return ordered[:count]


def check_commands(groups: list[GroupSpec]) -> None:
    """ConfigError naming every group whose command cannot be run (before anything starts)."""
    problems = []
    for spec in groups:
        argv = shlex.split(spec.command)
        if not argv or shutil.which(argv[0]) is None:
            problems.append(f"{spec.name}: command not found: {spec.command!r}")
    if problems:
        raise ConfigError(problems)


def die_with_parent() -> None:
    """In the child before exec: SIGKILL it when its parent (surge) dies (Linux only)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def _pump(name: str, stream: asyncio.StreamReader | None) -> None:
    """Log each line a replica writes, under its name."""
    if stream is None:
        return
    while True:
        try:
            line = await stream.readline()
        except ValueError:  # a line longer than the stream's buffer: log it in pieces
            line = await stream.read(READ_SIZE)
        if not line:
            return
        output_log.info("[%s] %s", name, line.decode(errors="replace").rstrip())
