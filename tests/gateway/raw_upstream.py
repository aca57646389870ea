"""A raw TCP upstream for tests that need one to misbehave on purpose (answer 503, stall,
answer late, answer garbage): each connection is served by its own thread, each read gets
`answer(data)` after `delay` seconds (None: say nothing), and `close_after` ends the
connection after the first answer."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable


class RawUpstream:
    def __init__(self, answer: Callable[[bytes], bytes | None], *, delay: float = 0.0,
                 close_after: bool = False) -> None:
        self.answer = answer
        self.delay = delay
        self.close_after = close_after
        self.requests = 0
        self.connections: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed: the test is over
            self.connections.append(conn)
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(65536):
                    self.requests += 1
                    if self.delay:
                        time.sleep(self.delay)
                    reply = self.answer(data)
                    if reply is not None:
                        conn.sendall(reply)
                    if self.close_after:
                        return
            except OSError:
                pass

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)   # wakes the blocked accept(); close does not
        self.listener.close()
        for conn in self.connections:
            conn.close()
