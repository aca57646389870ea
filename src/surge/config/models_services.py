"""The `services` section of surge.yaml: upstreams, replica processes, balancing, health,
outlier detection, retries and scaling of one service (and `scaling`, which job workers reuse).

Models only: parsing and checks of one service's own keys. References between sections (a
route naming a service) are checked in `models.py`; runtime support in `support.py`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from surge.config.checks import (
    check_absolute,
    check_any_set,
    check_cron,
    check_floors,
    check_not_below,
    check_wakes,
)
from surge.config.fields import (
    Address,
    Duration,
    HashKey,
    StatusRange,
    SurgeModel,
    check_token,
    problem_at,
)
from surge.upstreams.balancers import BALANCERS


class UpstreamSpec(SurgeModel):
    """One fixed upstream; a plain `host:port` string means weight 1."""

    model_config = ConfigDict(json_schema_extra=lambda schema: _or_plain_address(schema))

    address: Address
    """Where the replica listens, `host:port`."""
    weight: int = Field(default=1, ge=1)
    """Relative share of traffic with `balance: weighted` (and the slow-start ramp)."""

    @model_validator(mode="before")
    @classmethod
    def _plain_address(cls, data: Any) -> Any:
        return {"address": data} if isinstance(data, str) else data


def _or_plain_address(schema: dict[str, Any]) -> None:
    as_object = dict(schema)
    schema.clear()
    schema["anyOf"] = [{"type": "string", "format": "host:port"}, as_object]


class ProcessSpec(SurgeModel):
    """Replicas that surge starts, watches and restarts."""

    command: str
    """Command line of one replica; `{port}` is replaced by the port surge gives it."""
    env: dict[str, str] = {}
    """Extra environment variables for each replica."""
    replicas: int = Field(default=1, ge=1)
    """How many replicas to run (the starting count when `scaling` is set)."""

    @field_validator("command")
    @classmethod
    def _needs_port(cls, value: str) -> str:
        if "{port}" not in value:
            raise ValueError("the command must contain '{port}', which surge fills in per replica")
        return value


class HealthSpec(SurgeModel):
    """Active health checks: a new upstream gets traffic only after it passes."""

    path: str = "/healthz"
    """Path requested on each upstream."""
    interval: Duration = Field(default=2.0, gt=0)
    """Time between two checks of one upstream."""
    timeout: Duration = Field(default=1.0, gt=0)
    """How long one check may take; no longer than `interval`."""
    rise: int = Field(default=2, ge=1)
    """Consecutive passes that make an upstream healthy."""
    fall: int = Field(default=3, ge=1)
    """Consecutive failures that make an upstream unhealthy."""
    expect: StatusRange = Field(default="200-399", validate_default=True)
    """Response statuses that pass, e.g. `200-399` or `200`."""

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        return check_absolute(value)

    @field_validator("timeout")
    @classmethod
    def _within_interval(cls, value: float, info: ValidationInfo) -> float:
        interval = info.data.get("interval")
        if interval is not None and value > interval:
            raise ValueError(f"timeout ({value:g}s) is longer than interval ({interval:g}s)")
        return value


class OutlierSpec(SurgeModel):
    """Passive checks on live traffic: eject an upstream that keeps failing."""

    consecutive_failures: int = Field(default=5, ge=1)
    """Failures in a row (connect errors, 5xx) that eject an upstream."""
    ejection: Duration = Field(default=30.0, gt=0)
    """How long the first ejection lasts; it grows with each repeated ejection."""
    max_ejected_percent: int = Field(default=50, ge=0, le=100)
    """Never eject more than this share of a service's upstreams."""


class RetrySpec(SurgeModel):
    """Retries of failed requests: idempotent methods only, or a failure to connect."""

    attempts: int = Field(default=2, ge=0)
    """Extra tries after the first one."""
    budget_percent: int = Field(default=20, ge=0, le=100)
    """Retries never add more than this share of the service's load, beyond `min_per_second`."""
    min_per_second: int = Field(default=10, ge=0)
    """The budget's floor: this many retries a second are allowed whatever the share, so a
    quiet service retries the connect failures to a dead upstream until it is ejected."""
    backoff: Duration = 0.025
    """Base pause before a retry (jittered)."""


class TargetSpec(SurgeModel):
    """What the autoscaler tracks; set any of these, the largest proposal wins."""

    cpu_percent: float | None = Field(default=None, gt=0)
    """Average CPU use per replica, in percent of one core."""
    inflight_per_replica: float | None = Field(default=None, gt=0)
    """Requests in progress per replica."""
    p95_latency: Duration | None = Field(default=None, gt=0)
    """95th percentile latency of the service's responses."""
    queue_depth_per_replica: int | None = Field(default=None, gt=0)
    """Waiting jobs per replica (for job workers)."""

    @model_validator(mode="after")
    def _at_least_one(self) -> TargetSpec:
        check_any_set(dict(self))
        return self


class _ScaleStep(SurgeModel):
    """How fast scaling moves in one direction."""

    stabilization: Duration
    """Act on the most conservative proposal seen over this window."""
    max_step: int | str | list[int | str]
    """Largest change in one step: a replica count (`1`), a percent of the current count
    (`100%`), or a list of both (`[4, 100%]`: whichever allows more)."""

    @field_validator("max_step", mode="before")
    @classmethod
    def _count_or_percent(cls, value: Any) -> Any:
        if isinstance(value, list | tuple) and value:
            return [cls._count_or_percent(item) for item in value]
        text = str(value).strip()
        number = text[:-1] if text.endswith("%") else text
        if isinstance(value, bool) or not number.isdigit() or int(number) < 1:
            raise ValueError(f"expected a replica count like 1 or a percent like '100%', got "
                             f"{value!r}")
        return text if text.endswith("%") else int(text)


class ScaleUp(_ScaleStep):
    """How fast replicas are added: at once, by up to 4 replicas or doubling per step,
    whichever is more (HPA's default rule, applied every control period)."""

    stabilization: Duration = 0.0
    """Act on the lowest proposal seen over this window."""
    max_step: int | str | list[int | str] = [4, "100%"]
    """Most replicas added in one step: a count (`2`), a percent of the current count
    (`100%`), or a list of both (whichever allows more)."""


class ScaleDown(_ScaleStep):
    """How fast replicas are removed: after five calm minutes, one at a time."""

    stabilization: Duration = 300.0
    """Act on the highest proposal seen over this window."""
    max_step: int | str = 1
    """Most replicas removed in one step: a count (`1`) or a percent of the current count
    (`50%`)."""


class ScheduleEntry(SurgeModel):
    """A floor on the replica count from each time `cron` fires until the next entry fires."""

    cron: str
    """Cron expression in local time, e.g. `0 8 * * 1-5`."""
    min: int = Field(ge=0)
    """The replica floor from then on."""

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        return check_cron(value)


class ScalingSpec(SurgeModel):
    """Autoscaling of replicas that surge runs."""

    min: int = Field(default=1, ge=0)
    """Fewest replicas."""
    max: int = Field(ge=1)
    """Most replicas."""
    target: TargetSpec
    """The metrics to track."""
    scale_up: ScaleUp = ScaleUp()
    """How fast to add replicas."""
    scale_down: ScaleDown = ScaleDown()
    """How fast to remove replicas."""
    schedule: list[ScheduleEntry] = []
    """Raise the floor at known busy times."""

    @field_validator("max")
    @classmethod
    def _not_below_min(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("min")
        if low is not None:
            check_not_below(value, low, "max", "min")
        return value

    @field_validator("schedule")
    @classmethod
    def _floors_within_max(cls, value: list[ScheduleEntry], info: ValidationInfo) -> list:
        high = info.data.get("max")
        if high is not None:
            check_floors((entry.min for entry in value), high)
        return value

    @model_validator(mode="after")
    def _wakes(self) -> ScalingSpec:
        # The rule is about `min`, so it is reported there, though it needs `target` to decide.
        try:
            check_wakes(self.min, self.target.queue_depth_per_replica)
        except ValueError as exc:
            raise problem_at("min", self.min, exc) from None
        return self


if TYPE_CHECKING:
    Balance = str
else:  # the balancers' own table is the list of names: a new strategy needs no edit here
    Balance = Literal[tuple(BALANCERS)]


class Service(SurgeModel):
    """A named group of interchangeable upstreams behind one balancer."""

    upstreams: list[UpstreamSpec] = []
    """Fixed upstream addresses."""
    process: ProcessSpec | None = None
    """Replicas that surge starts, watches and scales."""
    balance: Balance = "p2c"
    """How an upstream is picked: p2c (least-request, power of two choices), round_robin,
    weighted, least_conn, hash, random."""
    hash_on: HashKey = "ip"
    """What `balance: hash` hashes: ip | path | header:NAME | cookie:NAME."""
    sticky_cookie: str | None = None
    """A cookie name that pins each client to one upstream."""
    health: HealthSpec | None = None
    """Active health checks; none means every upstream is taken as healthy."""
    outlier: OutlierSpec = OutlierSpec()
    """Passive checks on live traffic."""
    retry: RetrySpec = RetrySpec()
    """Retries of failed requests."""
    max_connections: int = Field(default=1024, ge=1)
    """Open connections per upstream."""
    max_pending: int = Field(default=1024, ge=0)
    """Requests waiting for a connection; past it the gateway answers 503."""
    slow_start: Duration = 0.0
    """Ramp a new upstream's share of traffic over this long."""
    panic_threshold: int = Field(default=50, ge=0, le=100)
    """Percent of upstreams that must be healthy; below it (while at least one is), traffic
    spreads over all of them so the few healthy ones are not overwhelmed (0 turns this off)."""
    scaling: ScalingSpec | None = None
    """Autoscaling of the `process` replicas."""

    @field_validator("upstreams")
    @classmethod
    def _distinct(cls, value: list[UpstreamSpec]) -> list[UpstreamSpec]:
        seen: set[str] = set()
        for spec in value:
            if spec.address in seen:
                raise ValueError(f"upstream {spec.address!r} is listed twice")
            seen.add(spec.address)
        return value

    @field_validator("sticky_cookie")
    @classmethod
    def _cookie_name(cls, value: str | None) -> str | None:
        return None if value is None else check_token(value)

    @field_validator("scaling")
    @classmethod
    def _needs_process(cls, value: ScalingSpec | None, info: ValidationInfo) -> Any:
        # Absent from info.data means `process` itself failed: that problem is reported there.
        if value is not None and "process" in info.data and info.data["process"] is None:
            raise ValueError("scaling applies to 'process' replicas; add 'process' or remove "
                             "'scaling'")
        return value

    @model_validator(mode="after")
    def _has_replicas(self) -> Service:
        if not self.upstreams and self.process is None:
            raise ValueError("a service needs 'upstreams', 'process' or both")
        return self

    def warnings(self, location: str) -> list[str]:
        """Keys that are valid but have no effect as written."""
        # `hash_on: ip` is the default, so written out (as in the reference example) it is inert.
        if self.hash_on != "ip" and self.balance != "hash":
            return [f"{location}.hash_on: has no effect unless balance is 'hash' "
                    f"(balance is {self.balance!r})"]
        return []
