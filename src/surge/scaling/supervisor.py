"""The supervisor: runs the replica processes of `services.NAME.process` and `jobs.workers.NAME`,
one asyncio task per replica slot driving its state machine (`replica.py`).

A service replica gets a free port, and joins its service (`membership.py`) only once its own
health check passes; the gateway then warms it. An unexpected exit is replaced in the same
slot after a backoff that grows with rapid failures. Scale-in and rolling restarts
(`rolling.py`) drain first: the replica leaves its service, in-flight requests finish (up to
`gateway.drain`), SIGTERM, SIGKILL after `grace` (`process.py`). Worker replicas have no port
and no gateway: they are ready once started. What to run comes from `groups.py`; deciding how
many replicas to run is the autoscaler's business (`loop.py`), never this one's."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from surge.errors import NotFound
from surge.ports import free_ports
from surge.scaling import process as proc
from surge.scaling.groups import Group, GroupSpec, Slot, pick_victims
from surge.scaling.lifecycle import LIVE, ProcessState
from surge.scaling.membership import Membership
from surge.scaling.metrics import EventLog
from surge.scaling.replica import Replica
from surge.scaling.rolling import start_rolling_restart

log = logging.getLogger("surge.supervisor")

S = ProcessState
POLL = 0.05            # how often a slot looks at its process, health and drain
START_TIMEOUT = 60.0   # a replica not healthy by then is killed and counts as a failure
STOP_GRACE = 10.0      # SIGTERM to SIGKILL


class Supervisor:
    def __init__(self, membership: Membership, groups: list[GroupSpec], *, drain: float = 30.0,
                 grace: float = STOP_GRACE, events: EventLog | None = None,
                 now: Callable[[], float] = time.monotonic) -> None:
        proc.check_commands(groups)
        self.membership = membership
        self.groups = {spec.name: Group(spec) for spec in groups}
        self.drain = drain
        self.grace = grace
        self.events = events or EventLog()
        self.now = now
        self.tasks: set[asyncio.Task[None]] = set()  # every slot's, also of removed groups
        self.stopping = False

    async def start(self) -> None:
        """Start every group's initial replicas (returns at once; they warm on their own)."""
        for name, group in self.groups.items():
            await self.scale(name, group.spec.replicas, reason="initial replicas")

    async def stop(self) -> None:
        """Drain and stop every replica; returns once all have exited."""
        self.stopping = True
        for group in self.groups.values():
            if group.restart_task is not None:
                group.restart_task.cancel()
            for slot in group.slots.values():
                slot.retire.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    # -- scaling ---------------------------------------------------------------------------------

    def count(self, name: str) -> int:
        return len(self.group(name).active)

    async def scale(self, name: str, desired: int, reason: str = "") -> None:
        """Bring the group to `desired` replicas: new slots start, surplus ones drain and stop."""
        group = self.group(name)
        active = group.active
        for _ in range(desired - len(active)):
            self.add_slot(group)
        for slot in pick_victims(active, len(active) - desired):
            self.retire(group, slot, reason or "scale-in")

    def restart(self, name: str, *, only_outdated: bool = False) -> asyncio.Task[int]:
        """Begin a rolling restart of the group (`rolling.py`): of every replica, or only of
        those whose command or env changed. ClientError if one runs already."""
        return start_rolling_restart(self, self.group(name), only_outdated=only_outdated)

    def add_group(self, spec: GroupSpec) -> Group:
        """A new group with no replicas yet (`scale` starts them)."""
        group = self.groups[spec.name] = Group(spec)
        return group

    def remove_group(self, name: str, reason: str) -> None:
        """Forget the group; its replicas drain and stop in the background (`stop` still
        waits for them)."""
        group = self.groups.pop(name)
        if group.restart_task is not None:
            group.restart_task.cancel()
        for slot in group.active:
            self.retire(group, slot, reason)

    def group(self, name: str) -> Group:
        group = self.groups.get(name)
        if group is None:
            raise NotFound(f"no supervised service or worker named '{name}'")
        return group

    def add_slot(self, group: Group) -> Slot:
        name = f"{group.spec.name}-{group.next_index}"
        group.next_index += 1
        replica = Replica(group.spec.name, name, changed_at=self.now())
        slot = Slot(replica, group.spec)
        group.replicas[name] = replica
        group.slots[name] = slot
        slot.task = asyncio.get_running_loop().create_task(self._run(group, slot))
        self.tasks.add(slot.task)
        slot.task.add_done_callback(self.tasks.discard)
        if self.stopping:
            slot.retire.set()
        return slot

    def retire(self, group: Group, slot: Slot, reason: str) -> None:
        slot.retire.set()
        self.events.record(group.spec.name, "retire", f"{slot.replica.name}: {reason}",
                           replica=slot.replica.name)

    # -- one slot --------------------------------------------------------------------------------

    async def _run(self, group: Group, slot: Slot) -> None:
        replica = slot.replica
        try:
            while not slot.retire.is_set():
                code = await self._guarded_life(group, slot)
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

    async def _guarded_life(self, group: Group, slot: Slot) -> int | None:
        """`_life`, where a failure once the process runs (a gateway process of `workers: N`
        that did not answer the join, say) counts as a crash: the process is stopped, and
        started again after the backoff unless the slot was retiring anyway."""
        try:
            return await self._life(group, slot)
        except Exception:
            replica = slot.replica
            if replica.pid is None or slot.process is None:
                raise  # it never started: the slot gives up (`_run`)
            log.exception("supervising %s failed: stopping it to start it again", replica.name)
            if replica.address is not None:
                with contextlib.suppress(Exception):  # the gateway's checks will drop it
                    await self.membership.leave(group.spec.name, replica.address)
            code = await self._terminate(slot)
            if slot.retire.is_set():
                replica.exited(code, self.now(), expected=True)
                return None
            return code

    async def _life(self, group: Group, slot: Slot) -> int | None:
        """Run one process in the slot until it exits (its code) or is retired (None)."""
        replica = slot.replica
        spec = slot.spec = group.spec  # a replacement runs what the group runs now
        port = free_ports(1)[0] if spec.gateway else None
        process = await proc.spawn(spec, replica.name, port)
        slot.process = process
        slot.pumps = proc.capture_output(replica.name, process)
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
        while not await proc.passes_health_check(spec, replica.address):
            if process.returncode is not None or slot.retire.is_set():
                return "gone"
            if self.now() > deadline:
                log.error("%s not healthy after %gs: killing it", replica.name, START_TIMEOUT)
                await self._terminate(slot)
                return "timeout"
            await self._wait(slot, 0.1)
        await self.membership.join(spec.name, replica.address)
        replica.move(S.WARMING, self.now())
        while not await self.membership.healthy(spec.name, replica.address):
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
        if replica.address is not None:
            await self.membership.leave(group.spec.name, replica.address)
        return await process.wait()

    async def _drain(self, group: Group, slot: Slot) -> None:
        """No new requests; wait for in-flight ones (up to `drain`), then SIGTERM."""
        replica, service = slot.replica, group.spec.name
        if replica.state in (S.WARMING, S.READY) and replica.address is not None:
            await self.membership.leave(service, replica.address)
            replica.move(S.DRAINING, self.now())  # from here on, no new request reaches it
            deadline = self.now() + self.drain
            while (self.now() < deadline
                   and await self.membership.inflight(service, replica.address)):
                await asyncio.sleep(POLL)
        replica.move(S.STOPPING, self.now())

    async def _terminate(self, slot: Slot) -> int:
        """SIGTERM the process group, SIGKILL after `grace`; its exit code."""
        process = slot.process
        assert process is not None
        if slot.replica.state in LIVE | {S.DRAINING}:
            slot.replica.move(S.STOPPING, self.now())
        return await proc.stop(slot.replica.name, process, self.grace)

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
