"""Rolling restart of one group (`surge restart SERVICE`, and a reload that changes a command
or its env): for each old replica, one new replica becomes ready before the old one drains,
so at most one extra runs and none is missing (max surge 1, max unavailable 0). It runs in
the background; its progress and outcome are events (`restart`, `restarted`,
`restart_failed`); `restarted` comes once no new request reaches an old replica. Replicas
started from a spec that changed while it ran are replaced too."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from surge.errors import ClientError, SurgeError
from surge.scaling.lifecycle import ProcessState

if TYPE_CHECKING:
    from surge.scaling.groups import Group, Slot
    from surge.scaling.supervisor import Supervisor

log = logging.getLogger("surge.supervisor")

S = ProcessState
POLL = 0.05


def start_rolling_restart(supervisor: Supervisor, group: Group, *,
                          only_outdated: bool = False) -> asyncio.Task[int]:
    """Begin replacing every replica of `group` (or those running an outdated command or env),
    one at a time; the task answers how many were replaced. ClientError if a rolling restart
    of it is already running."""
    if group.restarting:
        raise ClientError(f"a rolling restart of '{group.spec.name}' is already running")
    group.restarting = True
    batch = group.outdated() if only_outdated else group.active
    task = asyncio.get_running_loop().create_task(_roll(supervisor, group, batch))
    group.restart_task = task
    return task


async def _roll(supervisor: Supervisor, group: Group, batch: list[Slot]) -> int:
    name = group.spec.name
    supervisor.events.record(name, "restart", f"rolling restart of {len(batch)} replicas")
    replaced = 0
    retired: list[Slot] = []
    try:
        while batch:
            for slot in batch:
                new = supervisor.add_slot(group)
                await _until_ready(supervisor, group, new)
                if not slot.retire.is_set():
                    supervisor.retire(group, slot, "rolling restart")
                    retired.append(slot)
                replaced += 1
            batch = group.outdated()
        # Done means no new request reaches an old replica (they may still be draining).
        while any(s.replica.state in (S.WARMING, S.READY) for s in retired):
            await asyncio.sleep(POLL)
    except Exception as exc:  # a new replica that fails, or a bug: reported either way
        supervisor.events.record(name, "restart_failed", str(exc))
        log.error("rolling restart of %s failed: %s", name, exc)
        return replaced
    finally:
        group.restarting = False
        group.restart_task = None
    supervisor.events.record(name, "restarted", f"rolling restart done: {replaced} replicas "
                             "replaced")
    return replaced


async def _until_ready(supervisor: Supervisor, group: Group, slot: Slot) -> None:
    while slot.replica.state is not S.READY:
        replica = slot.replica
        if replica.state is S.BACKOFF or slot.retire.is_set():
            supervisor.retire(group, slot, "rolling restart aborted")
            raise SurgeError(f"rolling restart of '{group.spec.name}' stopped: the new "
                             f"replica {replica.name} exited with {replica.exit_code}; "
                             f"the old replicas keep serving")
        await asyncio.sleep(POLL)
