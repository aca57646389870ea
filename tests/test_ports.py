"""Ports handed out for later binding (replicas, workers' admin APIs) come from below the
kernel's ephemeral range, so no outgoing connection's source port can take one meanwhile."""

from __future__ import annotations

import socket

from surge import ports
from surge.ports import PORT_FLOOR, _ephemeral_start, free_ports


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range():
    ports = free_ports(50)
    assert len(set(ports)) == 50
    assert all(PORT_FLOOR <= p < _ephemeral_start() for p in ports)
    for port in ports[:5]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_in_use_is_skipped(monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_ports(1)[0]))
        taken.listen()
        busy = taken.getsockname()[1]
        monkeypatch.setattr(ports, "_next_port", busy - PORT_FLOOR)  # its turn comes next
        assert free_ports(1) != [busy]
