"""The autoscaling loop: every control period, per scaled service or worker group, collect
samples (CPU and RSS of each ready replica's process tree, in-flight requests from the gateway,
request rate and p95 latency from the deltas of its route counters, queue depth from the jobs
broker), ask the pure policy (`policy.py`) for a Decision, apply it through the supervisor and
keep it, inputs included, for `GET /api/scaling`. Also the admin routes of scaling.
No decision logic here: the policy decides, the supervisor acts."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from surge.admin.http import Request, Response, json_response
from surge.admin.router import Router
from surge.errors import BrokerError, ClientError
from surge.jobs.states import JobState
from surge.scaling.groups import groups_from_config
from surge.scaling.membership import GatewayMembership
from surge.scaling.metrics import EventLog, ProcessTree, ScalingCollector, ServiceTraffic
from surge.scaling.policy import Decision, Policy, PolicySpec, Sample
from surge.scaling.supervisor import Supervisor

log = logging.getLogger("surge.autoscaler")

DECISIONS_KEPT = 100


class Scaled:
    """One supervised group: what it samples from, and its policy with the last decisions
    (no policy without a `scaling` block: its replicas are still measured)."""

    def __init__(self, name: str, spec: PolicySpec | None,
                 traffic: ServiceTraffic | None) -> None:
        self.name = name
        self.policy = Policy(spec) if spec is not None else None
        self.traffic = traffic
        self.trees: dict[int, ProcessTree] = {}
        self.last: dict[str, Any] | None = None
        self.decisions: deque[dict[str, Any]] = deque(maxlen=DECISIONS_KEPT)


class ScalingLoop:
    def __init__(self, supervisor: Supervisor, scaling: dict[str, Any], *,
                 broker: Any = None, queues: tuple[str, ...] = (),
                 period: float | None = None, clock: Callable[[], float] = time.time) -> None:
        """`scaling` maps a supervised group to its `scaling` config block; `broker` (with the
        `queues` its workers serve) feeds queue depth to worker groups."""
        self.supervisor = supervisor
        self.events: EventLog = supervisor.events
        self.broker = broker
        self.queues = queues
        self.clock = clock
        self.scaled: dict[str, Scaled] = {}
        for name, group in supervisor.groups.items():
            block = scaling.get(name)
            spec = PolicySpec.from_config(block, control_period=period) if block else None
            stats = supervisor.membership.stats
            traffic = ServiceTraffic(stats, name) if group.spec.gateway and stats else None
            self.scaled[name] = Scaled(name, spec, traffic)
        periods = [s.policy.spec.control_period for s in self.scaled.values() if s.policy]
        self.period = period or min(periods, default=2.0)
        self.task: asyncio.Task[None] | None = None

    @classmethod
    def from_config(cls, config: Any, supervisor: Supervisor,
                    period: float | None = None) -> ScalingLoop:
        scaling = {n: s.scaling for n, s in config.services.items()
                   if s.process is not None and s.scaling is not None}
        broker, queues = None, ()
        if config.jobs is not None:
            scaling |= {n: w.scaling for n, w in config.jobs.workers.items()
                        if w.scaling is not None}
            if config.jobs.workers:
                from surge.jobs.broker import broker_from_url

                broker, queues = broker_from_url(config.jobs.broker), tuple(config.jobs.queues)
        return cls(supervisor, scaling, broker=broker, queues=queues, period=period)

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

    async def tick(self, now: float) -> dict[str, Decision]:
        """One control period: measure every group, decide and apply for the scaled ones."""
        decisions = {}
        for name, scaled in self.scaled.items():
            samples = await self.collect(scaled, now)
            if scaled.policy is not None:
                decisions[name] = await self.step(scaled, scaled.policy, samples, now)
        return decisions

    async def step(self, scaled: Scaled, policy: Policy, samples: list[Sample],
                   now: float) -> Decision:
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
        if scaled.traffic is not None:
            rate, p95 = scaled.traffic.sample(time.monotonic())
        upstreams = (await self.supervisor.membership.upstreams(scaled.name)
                     if scaled.traffic is not None else {})
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


async def start_scaling(gateway: Any, config: Any, router: Router | None) -> ScalingLoop:
    """Everything scaling adds to a running gateway: the supervisor starting the replicas of
    `config`, the loop, the metrics collector and (with an admin API) the admin routes."""
    supervisor = Supervisor(GatewayMembership(gateway), groups_from_config(config),
                            drain=config.gateway.drain)
    loop = ScalingLoop.from_config(config, supervisor)
    gateway.registry.register(ScalingCollector(supervisor, supervisor.events, loop.usage))
    if router is not None:
        register_routes(router, loop)
    await supervisor.start()
    loop.start()
    return loop


def register_routes(router: Router, loop: ScalingLoop) -> None:
    """`GET /api/scaling` and `POST /api/services/{name}/restart` (a rolling restart that runs
    in the background: 202 at once, progress in /api/scaling)."""
    supervisor = loop.supervisor
    restarts: set[asyncio.Task[Any]] = set()

    def scaling(request: Request) -> Response:
        return json_response(loop.view())

    async def restart(request: Request) -> Response:
        name = request.params["name"]
        if supervisor.group(name).restarting:
            raise ClientError(f"a rolling restart of '{name}' is already running")
        task = asyncio.get_running_loop().create_task(_restart(name))
        restarts.add(task)
        task.add_done_callback(restarts.discard)
        await asyncio.sleep(0)  # let it mark the group as restarting before answering
        return json_response({"service": name, "status": "restarting"}, 202)

    async def _restart(name: str) -> None:
        try:
            result = await supervisor.restart(name)
            loop.events.record(name, "restarted", f"rolling restart done: "
                               f"{result['replaced']} replicas replaced")
        except Exception as exc:
            loop.events.record(name, "restart_failed", str(exc))
            log.error("rolling restart of %s failed: %s", name, exc)

    router.add("GET", "/api/scaling", scaling)
    router.add("POST", "/api/services/{name}/restart", restart)
