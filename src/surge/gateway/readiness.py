"""Waiting for a TCP port to accept connections (a started replica, a worker), bounded."""

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
