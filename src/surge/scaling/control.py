"""Scaling as a running gateway (or the master of `workers: N`) holds it: `start_scaling` wires
the supervisor, the autoscaler loop, their metrics and admin routes (`GET /api/scaling`,
`POST /api/services/{name}/restart`), and the returned `ScalingControl` follows reloads.

A reload reconciles what runs with the new config: a new service with `process` (or a new
`jobs.workers` entry) starts its replicas; a removed one drains and stops; a changed command
or env is rolled out by a rolling restart (max surge 1, max unavailable 0); changed health
settings apply to replicas started from then on; a changed `scaling` block swaps the policy,
whose bounds apply at once; a changed fixed `replicas` count scales at once. `check` runs
before the gateway takes the config, so a reload that cannot be honoured is refused whole."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from surge.admin.http import Request, Response, json_response
from surge.admin.router import Router
from surge.scaling.groups import GroupSpec, groups_from_config
from surge.scaling.loop import ScalingLoop
from surge.scaling.membership import Membership
from surge.scaling.metrics import ScalingCollector
from surge.scaling.process import check_commands
from surge.scaling.spec import PolicySpec, group_policies
from surge.scaling.supervisor import Supervisor

if TYPE_CHECKING:
    from surge.config import Config

log = logging.getLogger("surge.autoscaler")


class ScalingControl:
    """The supervisor and its loop, stopped together and kept in step with reloads."""

    def __init__(self, loop: ScalingLoop) -> None:
        self.loop = loop
        self.supervisor = loop.supervisor

    async def stop(self) -> None:
        await self.loop.stop()

    def check(self, config: Config) -> None:
        """ConfigError when a reload to `config` could not be honoured: a new or changed
        command that cannot be found. (Its `scaling` blocks passed the models, which check
        every rule the policy has.)"""
        running = self.supervisor.groups
        check_commands([g for g in groups_from_config(config)
                        if g.name not in running or not g.same_process(running[g.name].spec)])

    async def reconcile(self, config: Config) -> None:
        """Bring the running groups to `config` (already checked, and taken by the gateway:
        a new service exists there before its replicas join it)."""
        supervisor = self.supervisor
        supervisor.drain = config.gateway.drain
        wanted = {g.name: g for g in groups_from_config(config)}
        policies = group_policies(config)
        for name in [n for n in supervisor.groups if n not in wanted]:
            self._note(name, "removed from the config: its replicas drain and stop")
            supervisor.remove_group(name, "removed from the config")
            self.loop.untrack(name)
        for name, spec in wanted.items():
            if name in supervisor.groups:
                await self._follow(name, spec, policies.get(name))
                continue
            self._note(name, f"added to the config: starting {spec.replicas} replicas")
            supervisor.add_group(spec)
            self.loop.track(name, policies.get(name))
            await supervisor.scale(name, spec.replicas, "added to the config")
        replaced = self.loop.follow_jobs(config)
        if replaced is not None:
            await replaced.close()

    async def _follow(self, name: str, spec: GroupSpec, policy: PolicySpec | None) -> None:
        group = self.supervisor.group(name)
        old, group.spec = group.spec, spec
        policy_changed = self.loop.track(name, policy)
        if policy is not None and policy_changed:
            self._note(name, "scaling changed: new policy")
            await self.loop.enforce_bounds(name)
        elif policy is None and (policy_changed or spec.replicas != old.replicas):
            self._note(name, f"a fixed count of {spec.replicas} replicas")
            await self.supervisor.scale(name, spec.replicas, "replicas set in the config")
        if not spec.same_process(old) and not group.restarting:
            self._note(name, "command or env changed: rolling restart")
            self.supervisor.restart(name, only_outdated=True)

    def _note(self, name: str, message: str) -> None:
        log.info("reload: %s: %s", name, message)
        self.supervisor.events.record(name, "reload", message)


async def start_scaling(membership: Membership, config: Config, registry: Any,
                        router: Router | None) -> ScalingControl:
    """Everything scaling adds to a running gateway (or master): the supervisor starting the
    replicas of `config`, the loop, the metrics collector in `registry` and (with an admin API)
    the admin routes."""
    supervisor = Supervisor(membership, groups_from_config(config), drain=config.gateway.drain)
    loop = ScalingLoop.from_config(config, supervisor)
    registry.register(ScalingCollector(supervisor, supervisor.events, loop.usage))
    if router is not None:
        register_routes(router, loop)
    await supervisor.start()
    loop.start()
    return ScalingControl(loop)


def register_routes(router: Router, loop: ScalingLoop) -> None:
    """`GET /api/scaling` and `POST /api/services/{name}/restart` (a rolling restart that runs
    in the background: 202 at once, progress in /api/scaling)."""

    def scaling(request: Request) -> Response:
        return json_response(loop.view())

    def restart(request: Request) -> Response:
        name = request.params["name"]
        loop.supervisor.restart(name)
        return json_response({"service": name, "status": "restarting"}, 202)

    router.add("GET", "/api/scaling", scaling)
    router.add("POST", "/api/services/{name}/restart", restart)
