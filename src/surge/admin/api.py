"""The control-plane routes of the admin API: health, metrics, services and their upstreams,
reload. Handlers validate input and call the ControlPlane; they keep no state of their own.
Errors are raised as SurgeErrors and rendered by the server.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from surge.admin.control import ControlPlane
from surge.admin.http import Request, Response, json_response
from surge.admin.router import Router
from surge.config.fields import Address
from surge.errors import ClientError, NotFound

_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")


class NewUpstream(BaseModel):
    """The body of `POST /api/services/{name}/upstreams`."""

    model_config = ConfigDict(extra="forbid")

    address: Address
    weight: int = Field(default=1, ge=1, le=1000, strict=True)


def upstream_path(service: str, address: str) -> str:
    return f"/api/services/{quote(service, safe='')}/upstreams/{quote(address, safe='')}"


class ControlRoutes:
    """The handlers, bound to one ControlPlane."""

    def __init__(self, control: ControlPlane) -> None:
        self.control = control

    def register(self, router: Router) -> None:
        router.add("GET", "/healthz", self.healthz)
        router.add("GET", "/metrics", self.metrics)
        router.add("GET", "/api/services", self.services)
        router.add("GET", "/api/services/{name}", self.service)
        router.add("POST", "/api/services/{name}/upstreams", self.add_upstream)
        router.add("GET", "/api/services/{name}/upstreams/{address}", self.upstream)
        router.add("DELETE", "/api/services/{name}/upstreams/{address}", self.remove_upstream)
        router.add("POST", "/api/reload", self.reload)

    def healthz(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    def metrics(self, request: Request) -> Response:
        body, content_type = self.control.metrics_text()
        return Response(200, body, content_type)

    def services(self, request: Request) -> Response:
        return json_response({"services": self.control.services_view()})

    def service(self, request: Request) -> Response:
        return json_response(self._service_view(request.params["name"]))

    def upstream(self, request: Request) -> Response:
        name, address = request.params["name"], request.params["address"]
        for upstream in self._service_view(name).get("upstreams", []):
            if upstream.get("address") == address:
                return json_response(upstream)
        raise NotFound(f"service {name!r} has no upstream {address!r}")

    async def add_upstream(self, request: Request) -> Response:
        try:
            new = NewUpstream.model_validate(request.json())
        except ValidationError as exc:
            raise ClientError("; ".join(_describe(error) for error in exc.errors())) from None
        name = request.params["name"]
        view = await self.control.add_upstream(name, new.address, new.weight)
        location = upstream_path(name, view.get("address", new.address))
        return json_response(view, 201, [("Location", location)])

    async def remove_upstream(self, request: Request) -> Response:
        await self.control.remove_upstream(request.params["name"], request.params["address"])
        return json_response({"status": "draining"}, 202)

    async def reload(self, request: Request) -> Response:
        return json_response(await self.control.reload())

    def _service_view(self, name: str) -> dict:
        for service in self.control.services_view():
            if service.get("name") == name:
                return service
        raise NotFound(f"no service {name!r}")


def _describe(error: ErrorDetails) -> str:
    """One pydantic error as `field: message`."""
    where = ".".join(str(part) for part in error["loc"]) or "body"
    return f"{where}: {error['msg']}"
