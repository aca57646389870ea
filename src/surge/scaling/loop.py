"""The autoscaling loop: every control period, per scaled service or worker group, collect
samples (CPU and RSS of each ready replica's process tree, in-flight requests from the gateway,
request rate and p95 latency from the deltas of its route counters, queue depth from the jobs
broker), ask the pure policy (`policy.py`) for a ScalingDecision, apply it through the
supervisor and keep it, inputs included, for `GET /api/scaling`. A reload may track new
groups, swap a group's policy or its broker (`control.py` decides when). No decision logic
here: the policy decides, the supervisor acts."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

from surge.errors import BrokerError, NotFound
from surge.jobs.states import JobState
from surge.scaling.metrics import EventLog, ProcessTree, ServiceTraffic
from surge.scaling.policy import Sample, ScalingDecision, ScalingPolicy
from surge.scaling.spec import PolicySpec, group_policies
from surge.scaling.supervisor import Supervisor

if TYPE_CHECKING:
    from surge.config import Config

log = logging.getLogger("surge.autoscaler")

DECISIONS_KEPT = 100


class Scaled:
    """One supervised group: what it samples from, and its policy with the last decisions
    (no policy without a `scaling` block: its replicas are still measured)."""

    def __init__(self, name: str, spec: PolicySpec | None,
                 traffic: ServiceTraffic | None) -> None:
        self.name = name
        self.policy = ScalingPolicy(spec) if spec is not None else None
        self.traffic = traffic
        self.trees: dict[int, ProcessTree] = {}
        self.last: dict[str, Any] | None = None
        self.decisions: deque[dict[str, Any]] = deque(maxlen=DECISIONS_KEPT)


class ScalingLoop:
    def __init__(self, supervisor: Supervisor, policies: dict[str, PolicySpec], *,
                 broker: Any = None, queues: tuple[str, ...] = (),
                 period: float | None = None, clock: Callable[[], float] = time.time) -> None:
        """`policies` maps a supervised group to its autoscaler spec (a group without one keeps
        a fixed count); `broker` (with the `queues` its workers serve) feeds queue depth to
        worker groups. `period` fixes the control period (else the shortest of the
        policies')."""
        self.supervisor = supervisor
        self.events: EventLog = supervisor.events
        self.broker = broker
        self.queues = queues
        self.jobs: tuple[str, tuple[str, ...]] | None = None  # the broker's URL and queues
        self.clock = clock
        self.fixed_period = period
        self.period = period or 2.0
        self.scaled: dict[str, Scaled] = {}
        for name in supervisor.groups:
            self.track(name, policies.get(name))
        self.task: asyncio.Task[None] | None = None

    @classmethod
    def from_config(cls, config: Config, supervisor: Supervisor,
                    period: float | None = None) -> ScalingLoop:
        loop = cls(supervisor, group_policies(config), period=period)
        loop.follow_jobs(config)
        return loop

    def track(self, name: str, spec: PolicySpec | None) -> bool:
        """Measure group `name`, with a policy built from `spec` (None: a fixed count). A
        changed spec swaps the policy (True); an unchanged one keeps it and its windows."""
        if spec is not None and self.fixed_period:
            spec = replace(spec, control_period=self.fixed_period)
        scaled = self.scaled.get(name)
        changed = scaled is not None and (scaled.policy and scaled.policy.spec) != spec
        if scaled is None:
            stats = self.supervisor.membership.stats
            service = self.supervisor.group(name).spec.gateway
            self.scaled[name] = Scaled(name, spec, ServiceTraffic(stats, name)
                                       if service and stats is not None else None)
        elif changed:
            scaled.policy = ScalingPolicy(spec) if spec is not None else None
        self._set_period()
        return changed

    def untrack(self, name: str) -> None:
        self.scaled.pop(name, None)
        self._set_period()

    def _set_period(self) -> None:
        periods = [s.policy.spec.control_period for s in self.scaled.values() if s.policy]
        self.period = self.fixed_period or min(periods, default=2.0)

    async def enforce_bounds(self, name: str) -> None:
        """Apply the bounds of a (new) policy now, before the next period: with no samples the
        policy holds the count, but within its min (or schedule floor) and max."""
        scaled = self.scaled[name]
        if scaled.policy is not None:
            await self.step(scaled, scaled.policy, [], self.clock())

    def follow_jobs(self, config: Config) -> Any:
        """Read queue depth from the broker of `config`'s jobs section (when it runs workers);
        the broker it replaces, to be closed, if any."""
        jobs = config.jobs
        wanted = (jobs.broker, tuple(jobs.queues)) if jobs is not None and jobs.workers else None
        if wanted == self.jobs:
            return None
        from surge.jobs.broker import broker_from_url

        old, self.jobs = self.broker, wanted
        self.broker = broker_from_url(wanted[0]) if wanted is not None else None
        self.queues = wanted[1] if wanted is not None else ()
        return old

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        """Stop deciding, then drain and stop every replica."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.supervisor.stop()
        if self.broker is not None:
            await self.broker.close()

    async def run(self) -> None:
        for scaled in self.scaled.values():  # the first reading only primes the counters
            await self.collect(scaled, self.clock())
        while True:
            await asyncio.sleep(self.period)
            try:
                await self.tick(self.clock())
            except Exception:  # a bug here must not stop scaling for good
                log.exception("autoscaler tick failed")

    async def tick(self, now: float) -> dict[str, ScalingDecision]:
        """One control period: measure every group, decide and apply for the scaled ones."""
        decisions = {}
        for name, scaled in list(self.scaled.items()):
            try:
                samples = await self.collect(scaled, now)
                if scaled.policy is not None:
                    decisions[name] = await self.step(scaled, scaled.policy, samples, now)
            except NotFound:  # removed by a reload meanwhile
                continue
        return decisions

    async def step(self, scaled: Scaled, policy: ScalingPolicy, samples: list[Sample],
                   now: float) -> ScalingDecision:
        name = scaled.name
        current = self.supervisor.count(name)
        decision = policy.decide(samples, current, now)
        applied = decision.desired != current and not self.supervisor.group(name).restarting
        scaled.last = {"at": round(now, 3), "current": current, "applied": applied,
                       **asdict(decision)}
        scaled.decisions.append(scaled.last)
        if applied:
            kind = "scale_up" if decision.desired > current else "scale_down"
            self.events.record(name, kind, f"{current} -> {decision.desired}: "
                               f"{decision.reason}", replicas_from=current,
                               replicas_to=decision.desired, metrics=decision.metrics)
            log.info("%s: %s -> %s replicas (%s)", name, current, decision.desired,
                     decision.reason)
            await self.supervisor.scale(name, decision.desired, decision.reason)
        return decision

    async def collect(self, scaled: Scaled, now: float) -> list[Sample]:
        """This period's samples: one per ready replica, plus queue depth for workers."""
        replicas = self.supervisor.group(scaled.name).replicas
        ready = self.supervisor.pids(scaled.name)
        rate = p95 = None
        upstreams = {}
        if scaled.traffic is not None:
            # First: reading the upstreams also brings the route counters up to date.
            upstreams = await self.supervisor.membership.upstreams(scaled.name)
            rate, p95 = scaled.traffic.sample(time.monotonic())
        samples = []
        trees = {}
        for name, pid in ready.items():
            tree = trees[pid] = scaled.trees.get(pid) or ProcessTree(pid)
            cpu, rss = tree.sample()
            up = upstreams.get(replicas[name].address or "")
            samples.append(Sample(
                at=now, replica=name, cpu_percent=cpu, rss=rss,
                inflight=up.inflight if up is not None else None,
                request_rate=rate / len(ready) if rate is not None else None,
                p95_latency=p95))
        scaled.trees = trees
        if scaled.traffic is None and self.broker is not None:
            depth = await self.queue_depth()
            if depth is not None:
                samples.append(Sample(at=now, queue_depth=depth))
        return samples

    async def queue_depth(self) -> int | None:
        """Jobs waiting to run over the configured queues; None when the broker cannot say."""
        try:
            depths = [await self.broker.depth(queue) for queue in self.queues]
        except (BrokerError, OSError) as exc:
            log.warning("autoscaler: queue depth unavailable: %s", exc)
            return None
        return sum(d.get(str(JobState.QUEUED), 0) for d in depths)

    def usage(self) -> dict[tuple[str, str], tuple[float | None, int | None]]:
        """(service, replica) -> (CPU %, RSS) as last sampled, for the metrics."""
        out = {}
        for scaled in self.scaled.values():
            names = {r.pid: r.name for r in self.supervisor.group(scaled.name).replicas.values()}
            for pid, tree in scaled.trees.items():
                if pid in names and tree.last is not None:
                    out[scaled.name, names[pid]] = tree.last
        return out

    def view(self) -> dict[str, Any]:
        """What `GET /api/scaling` answers: per group, replicas now, desired, why, events."""
        services = {}
        for name in self.supervisor.groups:
            entry = self.supervisor.view(name)
            scaled = self.scaled[name]
            if scaled.policy is None:
                entry |= {"desired": entry["replicas"], "reason": "fixed (no scaling block)"}
            else:
                spec = scaled.policy.spec
                last = scaled.last or {}
                entry |= {"desired": last.get("desired", entry["replicas"]),
                          "reason": last.get("reason", "waiting for the first control period"),
                          "min": spec.min, "max": spec.max, "last_decision": scaled.last}
            entry["events"] = self.events.recent(name)
            services[name] = entry
        return {"control_period": self.period, "services": services}

