"""Running a gateway process: the event loop (uvloop), signals (SIGTERM/SIGINT drain and stop,
SIGHUP reloads), the admin API beside the data path, and what is printed on the way."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import uvloop

from surge.admin.control import ControlPlane
from surge.admin.server import AdminServer
from surge.config import Config, load
from surge.errors import ConfigError
from surge.gateway.ratelimit import register_routes as register_rate_limit_routes
from surge.gateway.server import GatewayServer
from surge.jobs.gateway import JobsView
from surge.masking import mask_credentials

log = logging.getLogger("surge.gateway")

# How the master of `workers: N` hands a (replacement) gateway process the upstreams added or
# drained through it: JSON, service -> address -> weight (None: drained).
UPSTREAMS_ENV = "SURGE_MASTER_UPSTREAMS"


LOG_FORMAT = "%(asctime)s %(levelname)-7s {prefix}%(name)s: %(message)s"


class MaskingFormatter(logging.Formatter):
    """Every log line, a library's included, with the passwords of URLs masked."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_credentials(super().format(record))


def setup_logging(level: int = logging.INFO, prefix: str = "") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(MaskingFormatter(LOG_FORMAT.format(prefix=prefix)))
    logging.basicConfig(level=level, handlers=[handler])


async def serve(config: Config, path: Path | None, *, reuse_port: bool = False,
                admin: str | None = None, on_ready: Callable[[], None] | None = None,
                under_master: bool = False) -> None:
    """Run one gateway until SIGTERM/SIGINT, then drain and return; `on_ready` is called
    once every socket is bound and everything has started. One `under_master` (a gateway
    process of `workers: N`) runs no replicas (its master does), starts with the upstreams its
    master hands it, and tells the master its state."""
    loop = asyncio.get_running_loop()
    gateway = GatewayServer(config, path, reuse_port=reuse_port)
    if under_master:
        gateway.follow_admin_changes(json.loads(os.environ.get(UPSTREAMS_ENV) or "{}"))
    await gateway.start()
    admin_server = None
    admin = admin or config.gateway.admin
    if admin:
        host, _, port = admin.rpartition(":")
        admin_server = AdminServer(gateway, host.strip("[]"), int(port))
        register_rate_limit_routes(admin_server.router, lambda: gateway.rate_limiting)
        await admin_server.start()
    # Imported here: scaling imports this module. Started after the gateway: replicas join it.
    from surge.scaling.control import start_scaling
    from surge.scaling.master import register_state_route
    from surge.scaling.membership import GatewayMembership

    scaling = None
    if under_master:
        assert admin_server is not None  # its private admin API, for its master
        register_state_route(admin_server.router, gateway)
    else:
        scaling = await start_scaling(GatewayMembership(gateway), config, gateway.registry,
                                      admin_server.router if admin_server else None)
        gateway.followers.append(scaling)
    # The master reads the job queues once for all of its gateway processes.
    jobs = None if under_master else JobsView.from_config(
        config, admin_server.router if admin_server else None)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(reload(gateway)))
    # Everything loaded so far lives as long as the process: keep it out of the collector's
    # sight, so collections triggered by per-request garbage stay short.
    gc.collect()
    gc.freeze()
    if on_ready is not None:
        on_ready()
    await stop.wait()
    log.info("stopping: draining in-flight requests for up to %gs", config.gateway.drain)
    if admin_server is not None:
        await admin_server.close()
    await gateway.shutdown()
    if scaling is not None:
        await scaling.stop()  # replicas stop after the last request they serve has finished
    if jobs is not None:
        await jobs.close()
    log.info("stopped")


async def reload(control: ControlPlane) -> None:
    """SIGHUP: re-read the file; an invalid one is refused and the old config keeps serving.
    `control` is the GatewayServer, or the master of `workers: N`."""
    try:
        await control.reload()
    except ConfigError as exc:
        log.error("reload refused, the running config stays:\n  %s",
                  "\n  ".join(exc.problems))
    except OSError as exc:
        log.error("reload refused, cannot read %s: %s", control.path, exc)


def run(config: Config, path: Path | None, *, reuse_port: bool = False,
        admin: str | None = None, under_master: bool = False,
        on_ready: Callable[[], None] | None = None) -> None:
    uvloop.run(serve(config, path, reuse_port=reuse_port, admin=admin,
                     under_master=under_master, on_ready=on_ready))


def run_gateway_process(path: str, index: int, admin_port: int) -> None:
    """Entry point of one of `workers: N` gateway processes (started by the master): the
    shared listeners with SO_REUSEPORT, and a private admin API for the master."""
    # `worker-N`: the prefix users know from `gateway.workers`.
    setup_logging(prefix=f"worker-{index} ")
    run(load(path), Path(path), reuse_port=True, admin=f"127.0.0.1:{admin_port}",
        under_master=True)


if __name__ == "__main__":
    run_gateway_process(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
