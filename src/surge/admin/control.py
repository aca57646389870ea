"""The interface the admin API drives: what the gateway's control plane offers it.

Only the Protocol lives here; the gateway implements it, tests use a small in-memory fake.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class ControlPlane(Protocol):
    @property
    def path(self) -> Path | None:
        """The config file that `reload` re-reads (None: started without one)."""
        ...

    def services_view(self) -> list[dict]:
        """Every service with its upstreams, e.g. `[{"name": "api", "balance": "p2c",
        "upstreams": [{"address": "127.0.0.1:8101", "weight": 1, "healthy": True,
        "ejected": False, "draining": False, "inflight": 0}]}]`."""
        ...

    async def add_upstream(self, service: str, address: str, weight: int) -> dict:
        """Add an upstream and return its view. Raises NotFound (unknown service) or
        ClientError (bad address, duplicate)."""
        ...

    async def remove_upstream(self, service: str, address: str) -> None:
        """Start drain-then-remove and return at once. Raises NotFound for an unknown service
        or upstream."""
        ...

    async def reload(self) -> dict:
        """Re-read the config file and return a summary; raises ConfigError."""
        ...

    def metrics_text(self) -> tuple[bytes, str]:
        """(body, content type) of the Prometheus exposition."""
        ...
