"""The one lifecycle of a supervised process, a replica or a gateway process alike: an explicit
state machine (one table of states and legal moves) and the restart backoff that turns a crash
loop into a slow, visible retry. Pure: no processes, no clocks; the caller passes `now`.

    starting -> warming -> ready -> draining -> stopping -> exited
    (any live state) -> exited;  exited -> backoff -> starting (a replacement in the same slot)

`starting`: the process runs, its own health check has not passed yet. `warming`: it passed and
the gateway has it, waiting for the gateway's first verdict (replicas of a service only).
`ready`: it serves. `draining`: no new requests, in-flight ones finish. `stopping`: SIGTERM
sent, SIGKILL follows after a grace period. `exited`: no process. `backoff`: waiting to be
started again. Who drives these moves (the supervisor for replicas, the master for its gateway
processes) lives elsewhere, never here."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from surge.errors import IllegalTransition


class ProcessState(StrEnum):
    STARTING = "starting"
    WARMING = "warming"
    READY = "ready"
    DRAINING = "draining"
    STOPPING = "stopping"
    EXITED = "exited"
    BACKOFF = "backoff"


S = ProcessState
TRANSITIONS: dict[ProcessState, frozenset[ProcessState]] = {
    S.STARTING: frozenset({S.WARMING, S.READY, S.STOPPING, S.EXITED}),
    S.WARMING: frozenset({S.READY, S.DRAINING, S.STOPPING, S.EXITED}),
    S.READY: frozenset({S.DRAINING, S.STOPPING, S.EXITED}),
    S.DRAINING: frozenset({S.STOPPING, S.EXITED}),
    S.STOPPING: frozenset({S.EXITED}),
    S.EXITED: frozenset({S.BACKOFF}),
    S.BACKOFF: frozenset({S.STARTING, S.EXITED}),
}
# States in which a process may be running and counts towards its group.
LIVE = frozenset({S.STARTING, S.WARMING, S.READY})

# Restart backoff: the first restart waits BASE, each rapid failure doubles it, up to MAX.
BACKOFF_BASE = 0.5
BACKOFF_MAX = 30.0
# A process that lived at least this long before exiting was healthy: its next crash starts
# the backoff afresh.
STABLE_UPTIME = 10.0
# This many rapid failures in a row is a crash loop (reported, still retried with backoff).
CRASH_LOOP_AFTER = 3


def check_move(what: str, state: ProcessState, to: ProcessState) -> None:
    """IllegalTransition unless `state -> to` is a move of the table."""
    if to not in TRANSITIONS[state]:
        raise IllegalTransition(f"{what}: {state} -> {to} is not allowed")


def restart_delay(failures: int) -> float:
    """Seconds to wait before restarting after `failures` rapid failures in a row (>= 1)."""
    return min(BACKOFF_BASE * 2 ** max(failures - 1, 0), BACKOFF_MAX)


def failures_after_exit(failures: int, started_at: float, now: float) -> int:
    """Rapid failures in a row once a process started at `started_at` exits unasked at `now`:
    one more, or the first of a new run when it had lived STABLE_UPTIME."""
    return 1 if now - started_at >= STABLE_UPTIME else failures + 1


@dataclass(kw_only=True)
class Lifecycle:
    """One slot's process through its lifecycle: its state, when it moved, and the restart
    bookkeeping. A subclass names the slot (`__str__`, used in errors) and adds what it needs
    (a replica's port, a gateway process's admin port)."""

    state: ProcessState = S.STARTING
    pid: int | None = None
    started_at: float = 0.0
    changed_at: float = 0.0
    starts: int = 0
    failures: int = 0            # rapid failures in a row
    restart_at: float | None = None
    exit_code: int | None = None
    history: list[tuple[float, ProcessState]] = field(default_factory=list)

    def __str__(self) -> str:
        return "process"

    @property
    def crash_looping(self) -> bool:
        return self.failures >= CRASH_LOOP_AFTER

    def move(self, to: ProcessState, now: float) -> None:
        """Take one move of the table; IllegalTransition for any other."""
        check_move(str(self), self.state, to)
        self.state = to
        self.changed_at = now
        self.history = [*self.history[-19:], (now, to)]

    def settle(self, now: float) -> None:
        """Called while the process runs: once it has lived STABLE_UPTIME, the crash loop (if
        any) is over."""
        if self.pid is not None and now - self.started_at >= STABLE_UPTIME:
            self.failures = 0

    def begin(self, pid: int, now: float) -> None:
        """A (new) process runs in this slot."""
        if self.state is S.BACKOFF:
            self.move(S.STARTING, now)
        elif self.state is not S.STARTING or self.pid is not None:
            raise IllegalTransition(f"{self}: cannot start while {self.state}")
        self.pid, self.started_at = pid, now
        self.starts += 1
        self.exit_code = None

    def exited(self, code: int | None, now: float, *, expected: bool) -> float | None:
        """The process ended. An unexpected exit schedules a restart: the returned delay
        (None when the exit was asked for, e.g. scale-in or shutdown)."""
        self.move(S.EXITED, now)
        self.pid, self.exit_code = None, code
        if expected:
            return None
        self.failures = failures_after_exit(self.failures, self.started_at, now)
        delay = restart_delay(self.failures)
        self.move(S.BACKOFF, now)
        self.restart_at = now + delay
        return delay

    def uptime(self, now: float) -> float | None:
        return round(now - self.started_at, 3) if self.pid is not None else None

    def restart_in(self, now: float) -> float | None:
        if self.state is S.BACKOFF and self.restart_at:
            return round(max(self.restart_at - now, 0.0), 3)
        return None
