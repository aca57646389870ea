"""An asyncio transport with no kernel behind it, for driving the data path's protocols
(`ClientConnection`, `UpstreamConnection`) byte for byte: the policy chain's unit tests and
`bench/data_path.py` use it."""

from __future__ import annotations

import asyncio


class MemoryTransport(asyncio.Transport):
    """Collects writes; reading can be paused and resumed; nothing reaches a kernel."""

    def __init__(self, peer: tuple[str, int]) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.peer = peer

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.written.append(data)

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self.peer if name == "peername" else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def take(self) -> bytes:
        """Everything written since the last take, as one string of bytes."""
        data, self.written = b"".join(self.written), []
        return data
