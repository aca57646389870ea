"""The surge.yaml models: the `Config` root and its gateway, routes, rate limits and jobs
sections (services live in `models_services.py`). Attribute names are exactly the YAML keys.

References between sections (a route naming a service or a plan) are checked while validating
with a context (`Config.model_validate(data, context={})`, which `loading.parse` does): the
root notes the names the file defines before the fields that use them are validated, so each
problem is reported at the key that holds the bad name. Whether the runtime supports a key is
not decided here but in `support.py`."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlparse

from pydantic import (
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from surge.config.checks import (
    check_absolute,
    check_http_url,
    check_networks,
    check_not_below,
    check_reference,
)
from surge.config.fields import (
    Address,
    Addresses,
    ClientKey,
    Duration,
    Method,
    Name,
    RateValue,
    Size,
    SurgeModel,
    check_token,
    problem_at,
    split_address,
)
from surge.config.models_services import ScalingSpec, Service
from surge.ratelimit.algorithms import ALGORITHMS
from surge.ratelimit.settings import ON_STORE_ERROR

DEFAULT_PLANS = {"anonymous": ["60/minute"]}
_WILDCARD_HOSTS = {"0.0.0.0", "::", "*", ""}


class Timeouts(SurgeModel):
    """How long the gateway waits, per step of a request."""

    connect: Duration = Field(default=2.0, gt=0)
    """Opening a connection to an upstream."""
    client_header: Duration = Field(default=10.0, gt=0)
    """Receiving a whole request head (slow-client guard)."""
    upstream: Duration = Field(default=30.0, gt=0)
    """Waiting for an upstream's response head."""
    client_body: Duration = Field(default=30.0, gt=0)
    """Longest pause while a client sends its request body (slow-body guard); answered 408."""
    upstream_body: Duration = Field(default=30.0, gt=0)
    """Longest pause in an upstream's response body; the response is cut off."""
    idle: Duration = Field(default=75.0, gt=0)
    """Keep-alive idle time, client and upstream side; an upstream known to close idle
    connections sooner has them closed before it would (see architecture.md, Connect)."""


class Paths(SurgeModel):
    """How request paths are normalised before routing (RFC 3986: unreserved escapes decoded,
    dot-segments removed, the fragment dropped; a path above the root is a 400)."""

    encoded_slash: Literal["reject", "keep"] = "reject"
    """`reject`: a 400 for `%2F` or `%5C` in the path; `keep`: left encoded, routed as is."""
    merge_slashes: bool = False
    """Read `//` as `/` (for routing and, with `forward: normalized`, upstream)."""
    forward: Literal["normalized", "original"] = "normalized"
    """What the upstream sees: the normalised path, or the client's bytes (signed URLs);
    routing always uses the normalised path."""


class Gateway(SurgeModel):
    """The edge gateway: where it listens and its limits."""

    listen: Addresses = ["127.0.0.1:8000"]
    """Listener addresses: one `host:port` or a list of them."""
    admin: Address | None = None
    """Address of the admin API, /metrics and the dashboard; none means no admin listener."""
    workers: int = Field(default=1, ge=1)
    """Gateway processes sharing the listen ports (SO_REUSEPORT)."""
    access_log: str = Field(default="stdout", min_length=1)
    """`stdout`, `off` or a file path; one JSON object per request."""
    timeouts: Timeouts = Timeouts()
    """Timeouts for each step of a request."""
    max_header_bytes: Size = Field(default=16 * 1024, gt=0)
    """Largest request head; a larger one is answered 431."""
    max_body_bytes: Size = Field(default=10 * 1024 * 1024, ge=0)
    """Largest request body; a larger one is answered 413."""
    drain: Duration = 30.0
    """On stop or reload, how long in-flight requests may finish."""
    max_inflight: int = Field(default=10000, ge=1)
    """Requests the whole gateway process serves at once; past it new ones get a fast 503."""
    paths: Paths = Paths()
    """Path normalisation before routing."""

    @field_validator("listen")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        for i, address in enumerate(value):
            if (j := _clash(address, value[:i])) is not None:
                raise ValueError(f"{address!r} clashes with listen[{j}] ({value[j]!r})")
        return value

    @field_validator("admin")
    @classmethod
    def _not_a_listener(cls, value: str | None, info: ValidationInfo) -> str | None:
        listen = info.data.get("listen") or []
        if value is not None and (j := _clash(value, listen)) is not None:
            raise ValueError(f"{value!r} clashes with gateway.listen[{j}] ({listen[j]!r}); "
                             "the admin API needs its own port")
        return value


def _clash(address: str, others: list[str]) -> int | None:
    """Index of the first of `others` that binds the same port on an overlapping host."""
    host, port = split_address(address)
    for i, other in enumerate(others):
        other_host, other_port = split_address(other)
        if port == other_port and (
            host == other_host or {host, other_host} & _WILDCARD_HOSTS
        ):
            return i
    return None


class RouteRateLimit(SurgeModel):
    """Rate limiting of one route with a chosen plan or cost."""

    plan: str | None = None
    """Plan for requests without an API key; none means `rate_limits.default_plan`."""
    cost: int = Field(default=1, ge=1)
    """How many units one request uses."""

    @field_validator("plan")
    @classmethod
    def _known_plan(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            check_reference(value, "plan", (info.context or {}).get("plans"))
        return value


class RouteHedge(SurgeModel):
    """Hedged requests: an idempotent request with no response head after `delay` is sent once
    more to another upstream; the first answer wins and the other is cancelled."""

    delay: Duration | Literal["p95"] = "p95"
    """A duration such as `50ms`, or `p95`: the route's observed 95th percentile latency."""


def _flag_or_mapping(value: Any) -> str | None:
    if isinstance(value, bool):
        return "flag"
    if isinstance(value, dict | RouteRateLimit):
        return "mapping"
    return None


RouteRateLimitChoice = Annotated[
    Annotated[bool, Tag("flag")] | Annotated[RouteRateLimit, Tag("mapping")],
    Discriminator(
        _flag_or_mapping,
        custom_error_type="rate_limit",
        custom_error_message="expected true, false, {plan: NAME} or {cost: N}",
    ),
]


class RouteDeprecation(SurgeModel):
    """A route being retired: its responses carry `Deprecation` (RFC 9745), `Sunset` (RFC 8594)
    and `Link: rel="sunset"`, and its callers are counted per API key."""

    since: date
    """When it was deprecated, e.g. `2026-12-01`."""
    sunset: date | None = None
    """When it stops being served, e.g. `2027-06-30`."""
    link: str | None = None
    """Where callers read how to move, e.g. `https://example.com/migrate`."""

    @field_validator("link")
    @classmethod
    def _absolute_url(cls, value: str | None) -> str | None:
        if value is not None:
            check_http_url(value)
        return value

    @model_validator(mode="after")
    def _sunset_after_since(self) -> RouteDeprecation:
        if self.sunset is not None and self.sunset < self.since:
            raise problem_at("sunset", self.sunset, ValueError(
                f"{self.sunset} is before since ({self.since})"))
        return self


class Route(SurgeModel):
    """A rule that picks a service; the longest matching prefix wins, then version, host,
    methods, headers."""

    name: Name | None = None
    """What canaries, SLOs and per-route metrics call this route, e.g. `api`; unique."""
    prefix: str
    """Path prefix the request path starts with."""
    host: str | None = None
    """Host the request is for, e.g. `api.example.com`; none matches any."""
    methods: list[Method] | None = Field(default=None, min_length=1)
    """HTTP methods that match, e.g. `[GET, POST]`; none matches any."""
    headers: dict[str, str] | None = None
    """Headers that must be present with these exact values, e.g. `{X-Canary: "1"}`."""
    service: str
    """Name of the service that answers."""
    strip_prefix: bool = False
    """Remove the prefix from the path sent upstream."""
    rate_limit: RouteRateLimitChoice = False
    """`true`, `false`, `{plan: NAME}` or `{cost: N}`."""
    timeout: Duration | None = None
    """Total deadline for a request on this route, retries included, e.g. `10s`; past it the
    gateway answers 504 (or cuts off a response under way)."""
    hedge: RouteHedge | None = None
    """Send a slow idempotent request once more to another upstream, e.g. `{delay: 50ms}`;
    hedges count against the service's retry budget."""
    version: Name | None = None
    """The API version this route serves, read as the top-level `versioning` says, e.g. `"2"`;
    none serves any version. A versioned route beats an unversioned one of the same prefix."""
    deprecated: RouteDeprecation | None = None
    """e.g. `{since: 2026-12-01, sunset: 2027-06-30, link: https://...}`."""

    @field_validator("prefix")
    @classmethod
    def _absolute(cls, value: str) -> str:
        return check_absolute(value)

    def match_key(self) -> tuple:
        """What the route matches on: two routes with equal keys match the same requests."""
        return (
            self.prefix, self.version, self.host,
            None if self.methods is None else frozenset(self.methods),
            None if self.headers is None else frozenset(
                (name.lower(), value) for name, value in self.headers.items()),
        )

    @field_validator("host")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return None if value is None else value.strip().lower()

    @field_validator("service")
    @classmethod
    def _known_service(cls, value: str, info: ValidationInfo) -> str:
        check_reference(value, "service", (info.context or {}).get("services"))
        return value


# The rate limiting algorithms and store-error choices are read from the limiter's own
# tables. `shaping` holds a request back for its delay, which only the library's middleware
# does: the gateway answers at once, so the file cannot ask for it.
if TYPE_CHECKING:
    Algorithm = str
    OnStoreError = str
else:
    Algorithm = Literal[tuple(name for name in ALGORITHMS if name != "shaping")]
    OnStoreError = Literal[ON_STORE_ERROR]


class RateLimits(SurgeModel):
    """Rate limiting plans and how requests are counted."""

    algorithm: Algorithm = "gcra"
    """gcra (a token bucket), sliding_window or fixed_window."""
    key: ClientKey = "ip"
    """Who a request counts against when it carries no API key: ip | header:NAME."""
    plans: dict[Name, Annotated[list[RateValue], Field(min_length=1)]] = Field(
        default=DEFAULT_PLANS, validate_default=True
    )
    """Named lists of rates; a request must fit every rate of its plan."""
    default_plan: str = "anonymous"
    """Plan for requests without an API key."""
    on_store_error: OnStoreError = "allow"
    """What to do when the shared store cannot be reached."""
    dry_run: bool = False
    """Count and log would-be rejections but reject nothing (to tune limits on real traffic)."""
    trusted_proxies: list[str] = []
    """Networks (CIDRs, e.g. `10.0.0.0/8`) whose `X-Forwarded-For` is believed for `key: ip`."""

    @field_validator("default_plan")
    @classmethod
    def _known_plan(cls, value: str, info: ValidationInfo) -> str:
        plans = info.data.get("plans")
        check_reference(value, "plan", None if plans is None else set(plans))
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        check_networks(value)
        return value


class QueueSpec(SurgeModel):
    """Delivery rules of one job queue."""

    retries: int = Field(default=5, ge=0)
    """Tries after the first failure before a job is dead."""
    backoff: Duration = 1.0
    """Pause before the first retry; doubles with each retry."""
    max_backoff: Duration = 600.0
    """Longest pause between retries."""
    timeout: Duration = Field(default=300.0, gt=0)
    """How long one run of a job may take."""

    @field_validator("max_backoff")
    @classmethod
    def _not_below_backoff(cls, value: float, info: ValidationInfo) -> float:
        backoff = info.data.get("backoff")
        if backoff is not None:
            check_not_below(value, backoff, "max_backoff", "backoff", "s")
        return value


class WorkerSpec(SurgeModel):
    """Job-worker processes that surge runs and scales."""

    command: str
    """Command line of one worker process."""
    replicas: int = Field(default=1, ge=0)
    """How many workers to run (the starting count when `scaling` is set)."""
    scaling: ScalingSpec | None = None
    """Autoscaling of the workers, usually on `queue_depth_per_replica`."""


def check_store_url(value: str) -> str:
    """`local`, `memory://`, `sqlite:///path` or `redis://host:port/db` (also `rediss://`)."""
    if value == "local":
        return value
    parts = urlparse(value)
    if parts.scheme == "memory" or (parts.scheme in ("redis", "rediss") and parts.netloc):
        return value
    if parts.scheme == "sqlite" and parts.path.strip("/"):
        return value
    raise ValueError(
        f"expected local, memory://, sqlite:///path or redis://host:port/db, got {value!r}"
    )


class Jobs(SurgeModel):
    """Durable background jobs."""

    broker: str
    """Where jobs are kept: `sqlite:///path`, `redis://host:port/db` or `memory://`."""
    queues: dict[Name, QueueSpec] = {"default": QueueSpec()}
    """Named queues and their delivery rules."""
    workers: dict[Name, WorkerSpec] = {}
    """Named groups of worker processes."""

    @field_validator("broker")
    @classmethod
    def _store_url(cls, value: str) -> str:
        if value == "local":
            raise ValueError("the broker needs a URL: sqlite:///path, redis://host:port/db "
                             "or memory://")
        return check_store_url(value)


class Versioning(SurgeModel):
    """Where a request's API version is read, for routes with `version`: the header first,
    then the query parameter, else `default`. Both are forwarded unchanged."""

    header: str | None = "API-Version"
    """Request header carrying the version; null: not read from a header."""
    query: str | None = "version"
    """Query parameter carrying the version; null: not read from the query."""
    default: Name | None = None
    """The version of a request that names none, e.g. `"1"`; null: such a request matches
    only unversioned routes."""

    @field_validator("header")
    @classmethod
    def _header_name(cls, value: str | None) -> str | None:
        return None if value is None else check_token(value)

    @model_validator(mode="after")
    def _somewhere(self) -> Versioning:
        if self.header is None and self.query is None:
            raise ValueError("set `header`, `query` or both: where the version is read")
        return self


class Config(SurgeModel):
    """A whole stack, as described by one surge.yaml."""

    # Top-level keys starting with `x-` are free for YAML anchors (`x-defaults: &defaults`).
    model_config = ConfigDict(json_schema_extra={"patternProperties": {"^x-": {}}})

    gateway: Gateway = Gateway()
    """The edge gateway."""
    state: str = "local"
    """Shared state: `local` (in-process and files under data_dir), `memory://`,
    `sqlite:///path` or `redis://host:port/db`."""
    data_dir: str = Field(default=".surge", min_length=1)
    """Directory for local state files."""
    services: dict[Name, Service] = {}
    """Named services."""
    rate_limits: RateLimits = RateLimits()
    """Rate limiting plans."""
    routes: list[Route] = []
    """Rules that pick a service for each request."""
    jobs: Jobs | None = None
    """Background jobs; none means no broker and no workers."""
    versioning: Versioning | None = None
    """Where a request's API version is read, e.g. `{header: API-Version, default: "1"}`;
    needed by routes with `version`."""

    @model_validator(mode="before")
    @classmethod
    def _top_level(cls, data: Any, info: ValidationInfo) -> Any:
        """Note the names defined for the references; drop the `x-` keys."""
        if not isinstance(data, dict):
            return data
        if info.context is not None:
            info.context.update(_defined_names(data))
        return {key: value for key, value in data.items() if not str(key).startswith("x-")}

    @field_validator("state")
    @classmethod
    def _store_url(cls, value: str) -> str:
        return check_store_url(value)

    @field_validator("routes")
    @classmethod
    def _distinct_names(cls, value: list[Route]) -> list[Route]:
        named: dict[str, int] = {}
        for i, route in enumerate(value):
            if route.name is not None and named.setdefault(route.name, i) != i:
                raise ValueError(f"routes[{i}] takes the name {route.name!r} of "
                                 f"routes[{named[route.name]}]; route names are unique")
        return value

    @model_validator(mode="after")
    def _versions_readable(self) -> Config:
        served = {route.version for route in self.routes if route.version is not None}
        for i, route in enumerate(self.routes):
            if route.version is not None and self.versioning is None:
                raise problem_at(("routes", i, "version"), route.version, ValueError(
                    "a versioned route needs a top-level `versioning` section saying where "
                    "the version is read, e.g. `versioning: {header: API-Version}`"))
        default = self.versioning.default if self.versioning is not None else None
        if default is not None and default not in served:
            raise problem_at(("versioning", "default"), default, ValueError(
                f"no route serves version {default!r}; routes serve "
                f"{', '.join(sorted(served)) or 'no version'}"))
        return self

    def warnings(self) -> list[str]:
        """Keys that are valid but have no effect as written."""
        if not (self.services or self.routes or self.jobs):
            return ["the config defines no services, routes or jobs: `surge up` would answer "
                    "every request 404"]
        found = [w for name, s in self.services.items() for w in s.warnings(f"services.{name}")]
        routed = {route.service for route in self.routes}
        found += [f"services.{name}: no route uses it, so it gets no requests (add a route "
                  f"with `service: {name}`)" for name in self.services if name not in routed]
        first: dict[tuple, int] = {}
        for i, route in enumerate(self.routes):
            j = first.setdefault(route.match_key(), i)
            if j != i:
                found.append(f"routes[{i}]: matches the same requests as routes[{j}], which "
                             "comes first, so it is never chosen")
        return found


def _defined_names(data: dict) -> dict[str, set[str]]:
    """The service and plan names a raw config defines, where they can be read; a reference
    is checked only against names that could be read, so one bad section never causes false
    'unknown' problems elsewhere."""
    names: dict[str, set[str]] = {}
    services = data.get("services", {})
    if isinstance(services, dict):
        names["services"] = {str(k) for k in services}
    rate_limits = data.get("rate_limits", {})
    plans = rate_limits.get("plans", DEFAULT_PLANS) if isinstance(rate_limits, dict) else None
    if isinstance(plans, dict):
        names["plans"] = {str(k) for k in plans}
    return names
