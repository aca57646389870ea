"""One replica's operating-system process: spawning it (`{port}` and `PORT` filled in, a session
of its own, taken down with surge), logging its output line by line under its name, asking it
for its own health check, and stopping its process group (SIGTERM, SIGKILL after a grace).
No lifecycle decisions here: the supervisor drives the replica's state machine."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shlex
import shutil
import signal
from typing import TYPE_CHECKING

from surge.errors import ConfigError
from surge.upstreams.health import expect_ok
from surge.upstreams.prober import probe
from surge.upstreams.upstream import Upstream

if TYPE_CHECKING:
    from surge.scaling.groups import GroupSpec

log = logging.getLogger("surge.supervisor")
output_log = logging.getLogger("surge.replica")

READ_SIZE = 64 * 1024  # of replica output, when a line does not fit the buffer
PR_SET_PDEATHSIG = 1

Process = asyncio.subprocess.Process


async def spawn(spec: GroupSpec, name: str, port: int | None) -> Process:
    command = spec.command.replace("{port}", str(port)) if port else spec.command
    env = {**os.environ, **spec.env, "SURGE_REPLICA": name}
    if port:
        env["PORT"] = str(port)
    # A session of its own keeps the terminal's Ctrl-C away from replicas (the supervisor
    # drains them first); the parent-death signal takes them down if surge is killed.
    return await asyncio.create_subprocess_exec(
        *shlex.split(command), env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        start_new_session=True, preexec_fn=die_with_parent)


def capture_output(name: str, process: Process) -> list[asyncio.Task[None]]:
    """Tasks that log each line the process writes, under the replica's name."""
    loop = asyncio.get_running_loop()
    return [loop.create_task(_pump(name, stream)) for stream in (process.stdout, process.stderr)]


async def stop(name: str, process: Process, grace: float) -> int:
    """SIGTERM the process group, SIGKILL after `grace`; its exit code."""
    if process.returncode is None:
        _signal_group(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            log.warning("%s ignored SIGTERM for %gs: SIGKILL", name, grace)
    _signal_group(process.pid, signal.SIGKILL)  # and whatever it left behind
    return await process.wait()


async def passes_health_check(spec: GroupSpec, address: str) -> bool:
    """The replica's own answer, before the gateway hears of it: its health path when the
    service has one, else whether it accepts connections."""
    target = Upstream(address)
    if spec.health_path is None:
        try:
            async with asyncio.timeout(spec.health_timeout):
                _, writer = await asyncio.open_connection(target.host, target.port)
        except (OSError, TimeoutError):
            return False
        writer.close()
        return True
    status, _ = await probe(target, spec.health_path, spec.health_timeout)
    return expect_ok(status, spec.health_expect)


def check_commands(groups: list[GroupSpec]) -> None:
    """ConfigError naming every group whose command cannot be run (before anything starts)."""
    problems = []
    for spec in groups:
        argv = shlex.split(spec.command)
        if not argv or shutil.which(argv[0]) is None:
            problems.append(f"{spec.name}: command not found: {spec.command!r}")
    if problems:
        raise ConfigError(problems)


def die_with_parent() -> None:
    """In the child before exec: SIGKILL it when its parent (surge) dies (Linux only)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def _pump(name: str, stream: asyncio.StreamReader | None) -> None:
    if stream is None:
        return
    while True:
        try:
            line = await stream.readline()
        except ValueError:  # a line longer than the stream's buffer: log it in pieces
            line = await stream.read(READ_SIZE)
        if not line:
            return
        output_log.info("[%s] %s", name, line.decode(errors="replace").rstrip())
