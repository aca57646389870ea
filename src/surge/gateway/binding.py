"""Whether the addresses `surge up` must listen on are free, and who holds one that is not:
checked before anything starts, so a taken port is one line naming the address and its
holder, never a traceback from deep inside the event loop."""

from __future__ import annotations

import errno
import socket

from surge.config.fields import split_address


def bind_problems(addresses: dict[str, str]) -> list[str]:
    """One line per address (key: the config key it comes from) that cannot be bound now."""
    problems = []
    for key, address in addresses.items():
        reason = _bind_error(address)
        if reason is not None:
            problems.append(f"cannot listen on {address} ({key}): {reason}")
    return problems


def _bind_error(address: str) -> str | None:
    host, port = split_address(address)
    host = "" if host == "*" else host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # as the gateway binds: a port in TIME_WAIT only is free
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return exc.strerror or str(exc)
            holder = port_holder(port)
            return f"in use by {holder}" if holder else "already in use by another process"
    return None


def port_holder(port: int) -> str | None:
    """`name (pid N)` of the process listening on TCP `port`, when this user may see it."""
    import psutil

    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return None
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port \
                and conn.pid is not None:
            try:
                return f"{psutil.Process(conn.pid).name()} (pid {conn.pid})"
            except psutil.Error:
                return f"pid {conn.pid}"
    return None
