"""Rolling restart of one group (`surge restart SERVICE`, and a reload that changes a command
or its env): for each old replica, one new replica becomes ready before the old one drains,
so at most one extra runs and none is missing (max surge 1, max unavailable 0)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from surge.errors import ClientError, SurgeError
from surge.scaling.replica import ReplicaState

if TYPE_CHECKING:
    from surge.scaling.groups import Group, Slot
    from surge.scaling.supervisor import Supervisor

S = ReplicaState
POLL = 0.05


async def rolling_restart(supervisor: Supervisor, name: str) -> dict[str, Any]:
    """Replace every replica of group `name`, one at a time. ClientError if a rolling restart
    of it is already running; SurgeError if a new replica fails (the old ones keep serving)."""
    group = supervisor.group(name)
    if group.restarting:
        raise ClientError(f"a rolling restart of '{name}' is already running")
    group.restarting = True
    old = list(group.active)
    supervisor.events.record(name, "restart", f"rolling restart of {len(old)} replicas")
    try:
        for slot in old:
            new = supervisor.add_slot(group)
            await _until_ready(supervisor, group, new)
            if not slot.retire.is_set():
                supervisor.retire(group, slot, "rolling restart")
    finally:
        group.restarting = False
    return {"service": name, "replaced": len(old)}


async def _until_ready(supervisor: Supervisor, group: Group, slot: Slot) -> None:
    while slot.replica.state is not S.READY:
        replica = slot.replica
        if replica.state is S.BACKOFF or slot.retire.is_set():
            supervisor.retire(group, slot, "rolling restart aborted")
            raise SurgeError(f"rolling restart of '{group.spec.name}' stopped: the new "
                             f"replica {replica.name} exited with {replica.exit_code}; "
                             f"the old replicas keep serving")
        await asyncio.sleep(POLL)
