"""What the supervisor and autoscaler integration tests share: a surge.yaml whose service runs
replicas of the quickstart app (or any command), and readers of `/api/scaling`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx

from gateway.stack import fast_health, surge_yaml

QUICKSTART_APP = Path(__file__).resolve().parents[2] / "examples" / "quickstart" / "app.py"
APP_COMMAND = f"{sys.executable} {QUICKSTART_APP} --port {{port}}"


def scaled_yaml(command: str = APP_COMMAND, replicas: int = 2, *,
                scaling: dict[str, Any] | None = None, health: bool = True,
                balance: str = "p2c", **gateway: Any) -> str:
    """A gateway with one service `app` run by the supervisor, routed at `/`."""
    service: dict[str, Any] = {"process": {"command": command, "replicas": replicas},
                               "balance": balance}
    if health:
        # A replica busy with CPU-bound requests answers its checks late: tolerate that, or
        # a saturated replica looks dead exactly when it is needed most.
        service["health"] = fast_health(interval="500ms", timeout="500ms", rise=1, fall=3)
    if scaling is not None:
        service["scaling"] = scaling
    return surge_yaml({"app": service}, [{"prefix": "/", "service": "app"}],
                      **{"drain": "5s", **gateway})


def scaling_view(admin_url: str, service: str = "app") -> dict[str, Any]:
    return httpx.get(f"{admin_url}/api/scaling", timeout=5.0).json()["services"][service]


def ready(admin_url: str, service: str = "app") -> list[dict[str, Any]]:
    """The replicas of `service` that are ready, as /api/scaling shows them."""
    return [p for p in scaling_view(admin_url, service)["processes"] if p["state"] == "ready"]


def event_kinds(admin_url: str, service: str = "app") -> list[str]:
    return [e["kind"] for e in scaling_view(admin_url, service)["events"]]
