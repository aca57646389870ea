"""What the supervisor runs, as data: the replica groups a config asks for (`GroupSpec`, one per
service with `process` and per `jobs.workers` entry), the slots of a running group, and which
slots scale-in takes first. Pure: no processes, no event loop work here (`supervisor.py`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from surge.scaling.lifecycle import ProcessState
from surge.scaling.replica import Replica

if TYPE_CHECKING:
    from surge.config import Config

S = ProcessState
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

    def same_process(self, other: GroupSpec) -> bool:
        """Whether replicas started from `other` run what this spec would run (if not, a
        rolling restart brings them up to date; health settings apply without one)."""
        return (self.command, self.env, self.gateway) == (other.command, other.env,
                                                          other.gateway)


def groups_from_config(config: Config) -> list[GroupSpec]:
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
    """One replica slot: its state machine, its task, the signal to retire it, and the spec its
    process was started from."""

    def __init__(self, replica: Replica, spec: GroupSpec) -> None:
        self.replica = replica
        self.spec = spec
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
        self.restart_task: asyncio.Task[int] | None = None

    @property
    def active(self) -> list[Slot]:
        """Slots that count towards the replica count: not asked to retire."""
        return [s for s in self.slots.values() if not s.retire.is_set()]

    def outdated(self) -> list[Slot]:
        """Active slots whose process runs a command or env the spec no longer has."""
        return [s for s in self.active if not s.spec.same_process(self.spec)]


def pick_victims(slots: list[Slot], count: int) -> list[Slot]:
    """The `count` slots to retire: those not serving first, then the newest ready ones."""
    if count <= 0:
        return []
    rank = {state: i for i, state in enumerate(VICTIM_ORDER)}
    ordered = sorted(slots, key=lambda s: (rank.get(s.replica.state, -1),
                                           -s.replica.started_at))
    return ordered[:count]
