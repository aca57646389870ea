"""Local TCP ports handed out for a process to bind later: replicas, the admin APIs of gateway
processes. Neutral ground: the process wiring, the supervisor and the tests all take ports here,
so none of them imports another for it."""

from __future__ import annotations

import random
import socket
from pathlib import Path

# Ports handed out for a process to bind later (replicas, gateway processes' admin APIs) come
# from below the kernel's ephemeral range: a port the kernel picked there could be taken as the
# source port of some outgoing connection before its user binds it (seen in CI as "address
# already in use"). Handed out in turn from a random start, so one process does not repeat
# itself.
PORT_FLOOR = 10000
_next_port = 0


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 right now, below the ephemeral range."""
    global _next_port
    span = _ephemeral_start() - PORT_FLOOR
    if span < 4 * count:  # an unusual range: let the kernel pick
        return _kernel_ports(count)
    if not _next_port:
        _next_port = random.randrange(span) + 1
    found: list[int] = []
    for _ in range(span):
        port = PORT_FLOOR + _next_port % span
        _next_port += 1
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        found.append(port)
        if len(found) == count:
            return found
    raise OSError(f"no {count} free ports between {PORT_FLOOR} and {PORT_FLOOR + span}")


def _kernel_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
