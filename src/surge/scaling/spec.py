"""What the autoscaler is asked to do, as immutable values: targets, step and stabilization
rules, schedules, bounds (`PolicySpec`), built from the `scaling` block of surge.yaml. Pure;
`policy.py` applies them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from surge.config.checks import (
    InvalidValues,
    Problems,
    check_any_set,
    check_cron,
    check_floors,
    check_not_below,
    check_wakes,
)
from surge.config.units import parse_duration
from surge.errors import ConfigError

if TYPE_CHECKING:
    from surge.config.models import Config

# Per-replica metrics with a target, in the order reasons list them. Queue depth is separate:
# it is one number for the whole service, read from the broker.
REPLICA_TARGETS = ("cpu_percent", "inflight_per_replica", "p95_latency")
QUEUE_TARGET = "queue_depth_per_replica"

@dataclass(frozen=True, slots=True)
class Step:
    """How far one control period may move the count: `pods` replicas or `percent` of the
    current count; with both, the larger change is allowed (HPA's `selectPolicy: Max`).
    None on both means no limit."""

    pods: int | None = None
    percent: float | None = None

    def up_limit(self, current: int) -> int | None:
        changes = self._changes(current, up=True)
        return current + max(changes) if changes else None

    def down_limit(self, current: int) -> int | None:
        changes = self._changes(current, up=False)
        return current - max(changes) if changes else None

    def _changes(self, current: int, *, up: bool) -> list[int]:
        changes = [self.pods] if self.pods is not None else []
        if self.percent is not None:
            scaled = current * self.percent / 100
            if up:  # from zero, any percent allows one: the first job wakes a worker
                changes.append(max(math.ceil(scaled), 1 if self.percent > 0 else 0))
            else:
                changes.append(math.floor(scaled))
        return changes


@dataclass(frozen=True, slots=True)
class Rule:
    """One direction's behaviour: a stabilization window (seconds) and a step limit."""

    stabilization: float
    max_step: Step = Step()


# Surge's defaults: up at once by 4 replicas or doubling per period, whichever is more (HPA's
# default rule, which HPA applies per 15 s); down after 300 s, one at a time. Doubling alone
# would take a spike from 1 replica to 4 in two periods, while its queue grows.
DEFAULT_SCALE_UP = Rule(0.0, Step(pods=4, percent=100))
DEFAULT_SCALE_DOWN = Rule(300.0, Step(pods=1))


@dataclass(frozen=True, slots=True)
class Targets:
    cpu_percent: float | None = None
    inflight_per_replica: float | None = None
    p95_latency: float | None = None  # seconds
    queue_depth_per_replica: float | None = None

    def configured(self) -> dict[str, float]:
        names = (*REPLICA_TARGETS, QUEUE_TARGET)
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


@dataclass(frozen=True, slots=True)
class ScheduleEntry:
    """From each time `cron` fires (local time) until the next entry fires, `min` is a floor."""

    cron: str
    min: int


@dataclass(frozen=True, slots=True)
class PolicySpec:
    min: int
    max: int
    targets: Targets
    scale_up: Rule = DEFAULT_SCALE_UP
    scale_down: Rule = DEFAULT_SCALE_DOWN
    schedule: tuple[ScheduleEntry, ...] = ()
    control_period: float = 2.0
    tolerance: float = 0.1
    timezone: tzinfo | None = None  # for the schedule; None is the machine's local time
    # A CPU target also proposes from demand (arrivals and queue, see demand.py). HPA has no
    # such thing: the benchmark turns it off to run HPA's algorithm.
    demand: bool = True

    def __post_init__(self) -> None:
        # The checks the config model makes (`surge.config.checks`), for a spec built directly.
        problems = Problems()
        problems.check("min", check_not_below, self.min, 0, "min", "zero")
        problems.check("max", check_not_below, self.max, self.min, "max", "min")
        problems.check("target", check_any_set, {
            name: getattr(self.targets, name) for name in (*REPLICA_TARGETS, QUEUE_TARGET)})
        problems.check("min", check_wakes, self.min, self.targets.queue_depth_per_replica)
        for i, entry in enumerate(self.schedule):
            problems.check(f"schedule[{i}].cron", check_cron, entry.cron)
        problems.check("schedule", check_floors, (e.min for e in self.schedule), self.max)
        problems.raise_any()

    @classmethod
    def from_config(cls, spec: Any, control_period: float | None = None) -> PolicySpec:
        """Build from the `scaling` block of surge.yaml: the config model or a mapping in its
        form (durations and steps as written there). ConfigError lists every problem, located
        under `scaling`."""
        target = config_value(spec, "target") or {}
        up, down = config_value(spec, "scale_up") or {}, config_value(spec, "scale_down") or {}
        period = (
            control_period or config_value(spec, "period") or config_value(spec, "control_period")
        )
        problems = Problems()
        rules = [problems.check(key, _rule, block, default) for key, block, default in (
            ("scale_up", up, DEFAULT_SCALE_UP), ("scale_down", down, DEFAULT_SCALE_DOWN))]
        try:
            problems.raise_any()
            return cls(
                min=int(config_value(spec, "min", 1)),
                max=int(config_value(spec, "max", 1)),
                targets=Targets(**{
                    name: config_seconds(v) if name == "p95_latency" else float(v)
                    for name in (*REPLICA_TARGETS, QUEUE_TARGET)
                    if (v := config_value(target, name)) is not None
                }),
                scale_up=rules[0] or DEFAULT_SCALE_UP,
                scale_down=rules[1] or DEFAULT_SCALE_DOWN,
                schedule=tuple(
                    ScheduleEntry(str(config_value(e, "cron")), int(config_value(e, "min")))
                    for e in config_value(spec, "schedule") or ()
                ),
                control_period=config_seconds(period) if period is not None else 2.0,
            )
        except InvalidValues as exc:
            raise ConfigError([f"scaling.{problem}" for problem in exc.problems]) from None


def group_policies(config: Config) -> dict[str, PolicySpec]:
    """The autoscaler's spec of every supervised group with a `scaling` block (a service with
    `process`, a `jobs.workers` entry): how the running gateway reads the config's scaling.
    ConfigError lists every problem at its place in the file."""
    blocks = {name: (f"services.{name}", service.scaling)
              for name, service in config.services.items()
              if service.process is not None and service.scaling is not None}
    if config.jobs is not None:
        blocks |= {name: (f"jobs.workers.{name}", worker.scaling)
                   for name, worker in config.jobs.workers.items() if worker.scaling is not None}
    policies, problems = {}, []
    for name, (where, block) in blocks.items():
        try:
            policies[name] = policy_at(where, block)
        except ConfigError as exc:
            problems += exc.problems
    if problems:
        raise ConfigError(problems)
    return policies


def policy_at(where: str, block: Any) -> PolicySpec:
    """`PolicySpec.from_config(block)` with each problem located under `where` (the key that
    holds the block: `services.api`), as `surge check` says it."""
    try:
        return PolicySpec.from_config(block)
    except ConfigError as exc:
        raise ConfigError([f"{where}.{problem}" for problem in exc.problems]) from None


def parse_step(value: Any) -> Step:
    """`"100%"` -> percent, `2` -> pods, a list of both -> whichever allows more; 0 forbids
    moving in that direction."""
    pods = percent = None
    for item in value if isinstance(value, list | tuple) else [value]:
        text = str(item).strip()
        try:
            if text.endswith("%"):
                percent = float(text[:-1])
            else:
                pods = int(text)
            if min(pods or 0, percent or 0) < 0:
                raise ValueError(text)
        except ValueError:
            raise ValueError(f"max_step must be a count or a percent, got {item!r}") from None
    return Step(pods=pods, percent=percent)


def config_value(source: Any, name: str, default: Any = None) -> Any:
    """A key of a config block, whether the block is a dict (parsed YAML) or a model."""
    if isinstance(source, Mapping):
        return source.get(name, default)
    return getattr(source, name, default)


def config_seconds(value: Any) -> float:
    """Seconds in a duration given as a string, a number or a timedelta."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    return parse_duration(value)


def _rule(source: Any, default: Rule) -> Rule:
    """A direction's rule from its block; ValueError for a `max_step` that is not one."""
    window, step = config_value(source, "stabilization"), config_value(source, "max_step")
    return Rule(
        stabilization=default.stabilization if window is None else config_seconds(window),
        max_step=default.max_step if step is None else parse_step(step),
    )
