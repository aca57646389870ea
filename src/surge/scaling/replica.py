"""One replica's lifecycle as an explicit state machine, and the restart backoff that turns a
crash loop into a slow, visible retry. Pure: no processes, no clocks; the caller passes `now`.

    starting -> warming -> ready -> draining -> stopping -> exited
    (any live state) -> exited;  exited -> backoff -> starting (a replacement in the same slot)

`starting`: the process runs, its own health check has not passed yet. `warming`: it passed and
the gateway has it, waiting for the gateway's first verdict. `ready`: it gets traffic.
`draining`: no new requests, in-flight ones finish. `stopping`: SIGTERM sent, SIGKILL follows
after a grace period. `exited`: no process. `backoff`: waiting to be started again.
The supervisor drives these moves; it lives in `supervisor.py`, never here."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from surge.errors import IllegalTransition


class ReplicaState(StrEnum):
    STARTING = "starting"
    WARMING = "warming"
    READY = "ready"
    DRAINING = "draining"
    STOPPING = "stopping"
    EXITED = "exited"
    BACKOFF = "backoff"


S = ReplicaState
TRANSITIONS: dict[ReplicaState, frozenset[ReplicaState]] = {
    S.STARTING: frozenset({S.WARMING, S.READY, S.STOPPING, S.EXITED}),
    S.WARMING: frozenset({S.READY, S.DRAINING, S.STOPPING, S.EXITED}),
    S.READY: frozenset({S.DRAINING, S.STOPPING, S.EXITED}),
    S.DRAINING: frozenset({S.STOPPING, S.EXITED}),
    S.STOPPING: frozenset({S.EXITED}),
    S.EXITED: frozenset({S.BACKOFF}),
    S.BACKOFF: frozenset({S.STARTING, S.EXITED}),
}
# States in which a process may be running and counts towards the service's replicas.
LIVE = frozenset({S.STARTING, S.WARMING, S.READY})

# Restart backoff: the first restart waits BASE, each rapid failure doubles it, up to MAX.
BACKOFF_BASE = 0.5
BACKOFF_MAX = 30.0
# A replica that lived at least this long before exiting was healthy: its next crash starts
# the backoff afresh.
STABLE_UPTIME = 10.0
# This many rapid failures in a row is a crash loop (reported, still retried with backoff).
CRASH_LOOP_AFTER = 3


def restart_delay(failures: int) -> float:
    """Seconds to wait before restarting after `failures` rapid failures in a row (>= 1)."""
    return min(BACKOFF_BASE * 2 ** max(failures - 1, 0), BACKOFF_MAX)


@dataclass
class Replica:
    """One slot of a service: `name` stays while its process is replaced; `port` and `pid`
    change with each start."""

    service: str
    name: str
    state: ReplicaState = S.STARTING
    port: int | None = None
    pid: int | None = None
    started_at: float = 0.0
    changed_at: float = 0.0
    starts: int = 0
    failures: int = 0            # rapid failures in a row
    restart_at: float | None = None
    exit_code: int | None = None
    history: list[tuple[float, ReplicaState]] = field(default_factory=list)

    @property
    def address(self) -> str | None:
        return f"127.0.0.1:{self.port}" if self.port is not None else None

    @property
    def crash_looping(self) -> bool:
        return self.failures >= CRASH_LOOP_AFTER

    def move(self, to: ReplicaState, now: float) -> None:
        """Take one move of the table; IllegalTransition for any other."""
        if to not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"replica {self.name}: {self.state} -> {to} is not allowed")
        self.state = to
        self.changed_at = now
        self.history = [*self.history[-19:], (now, to)]

    def settle(self, now: float) -> None:
        """Called while the process runs: once it has lived STABLE_UPTIME, the crash loop (if
        any) is over."""
        if self.pid is not None and now - self.started_at >= STABLE_UPTIME:
            self.failures = 0

    def started(self, pid: int, port: int | None, now: float) -> None:
        """A (new) process runs in this slot."""
        if self.state is S.BACKOFF:
            self.move(S.STARTING, now)
        elif self.state is not S.STARTING or self.pid is not None:
            raise IllegalTransition(f"replica {self.name}: cannot start while {self.state}")
        self.pid, self.port, self.started_at = pid, port, now
        self.starts += 1
        self.exit_code = None

    def exited(self, code: int | None, now: float, *, expected: bool) -> float | None:
        """The process ended. An unexpected exit schedules a restart: the returned delay
        (None when the exit was asked for, e.g. scale-in or shutdown)."""
        self.move(S.EXITED, now)
        self.pid, self.exit_code = None, code
        if expected:
            return None
        uptime = now - self.started_at
        self.failures = 1 if uptime >= STABLE_UPTIME else self.failures + 1
        delay = restart_delay(self.failures)
        self.move(S.BACKOFF, now)
        self.restart_at = now + delay
        return delay

    def view(self, now: float) -> dict[str, object]:
        return {
            "name": self.name, "state": str(self.state), "address": self.address,
            "pid": self.pid, "starts": self.starts, "failures": self.failures,
            "crash_looping": self.crash_looping, "exit_code": self.exit_code,
            "uptime": round(now - self.started_at, 3) if self.pid is not None else None,
            "restart_in": (round(max(self.restart_at - now, 0.0), 3)
                           if self.state is S.BACKOFF and self.restart_at else None),
        }
