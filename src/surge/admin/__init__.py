"""The admin API: the gateway's control surface on `gateway.admin`.

`AdminServer(control, host, port)` serves the control-plane routes; other features add theirs
with `server.router.add("GET", "/api/...", handler)`, a handler taking a `Request` and
returning a `Response` (e.g. from `json_response`) or raising a `surge.errors.SurgeError`.
"""

from surge.admin.control import ControlPlane
from surge.admin.http import Limits, Request, Response, json_response
from surge.admin.router import Router
from surge.admin.server import AdminServer

__all__ = [
    "AdminServer", "ControlPlane", "Limits", "Request", "Response", "Router", "json_response",
]
