"""Whether a TCP port accepts connections: now, or within a bounded wait (a started replica,
a gateway process of `workers: N`)."""

from __future__ import annotations

import socket
import time


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    """True once (host, port) accepts a connection, False after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), 0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def port_in_use(host: str, port: int) -> bool:
    """Something accepts connections on (host, port) right now."""
    try:
        with socket.create_connection((host, port), 0.5):
            return True
    except OSError:
        return False
