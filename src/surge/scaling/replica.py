"""One replica of a supervised service or job worker group: a slot whose name stays while its
process is replaced, going through the shared process lifecycle (`lifecycle.py`: the state
table and the restart backoff). Pure: no processes, no clocks; the caller passes `now`.
The supervisor drives the moves; it lives in `supervisor.py`, never here."""

from __future__ import annotations

from dataclasses import dataclass

from surge.scaling.lifecycle import Lifecycle


@dataclass
class Replica(Lifecycle):
    """One slot of a service: `name` stays while its process is replaced; `port` and `pid`
    change with each start."""

    service: str
    name: str
    port: int | None = None

    def __str__(self) -> str:
        return f"replica {self.name}"

    @property
    def address(self) -> str | None:
        return f"127.0.0.1:{self.port}" if self.port is not None else None

    def started(self, pid: int, port: int | None, now: float) -> None:
        """A (new) process runs in this slot, on `port` when it serves."""
        self.begin(pid, now)
        self.port = port

    def view(self, now: float) -> dict[str, object]:
        return {
            "name": self.name, "state": str(self.state), "address": self.address,
            "pid": self.pid, "starts": self.starts, "failures": self.failures,
            "crash_looping": self.crash_looping, "exit_code": self.exit_code,
            "uptime": self.uptime(now), "restart_in": self.restart_in(now),
        }
