"""Real processes for integration tests: a fleet of upstream replicas and the gateway itself.

`start_upstreams` runs `support.upstream_app` replicas, `start_gateway` runs `surge up FILE`;
both capture output to files under `tmp_path` and put the tails of those files into every
failure message. Each process is also a context manager, and anything still alive when the
interpreter exits is killed (`atexit`), so a crashed test leaves nothing behind. The pytest
fixtures that wrap these live in `support.fixtures`; the load client in `support.load`."""

from __future__ import annotations

import atexit
import functools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Self

import httpx
import psutil
import yaml

from support.load import LoadLoop
from surge.ports import free_ports

__all__ = [
    "GatewayProcess", "LoadLoop", "ManagedProcess", "ProcessFailed", "UpstreamProcess",
    "free_port", "gateway_process_pids", "gateway_processes", "port_open", "rss_of",
    "start_gateway", "start_upstreams", "stop_all", "surge_up_available", "wait_for_port",
]

TESTS_DIR = Path(__file__).resolve().parent.parent
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
TAIL_LINES = 30

_live: set[ManagedProcess] = set()


class ProcessFailed(RuntimeError):
    """A helper process did not start, or died; the message carries its output's tail."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now, below the ephemeral range on 127.0.0.1 (see
    `free_ports`: no outgoing connection can take it before the test binds it)."""
    if host == "127.0.0.1":
        return free_ports(1)[0]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float = START_TIMEOUT) -> None:
    """Return once `host:port` accepts connections; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not port_open(host, port):
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")
        time.sleep(0.02)


def gateway_processes(master_pid: int) -> dict[int, tuple[int, int]]:
    """Index -> (pid, private admin port) of the live gateway processes of the master of
    `gateway.workers: N` (not its replicas), from their command lines
    (`python -m surge.app.run FILE INDEX PORT`); a killed one not yet reaped is left out."""
    found = {}
    for child in psutil.Process(master_pid).children():
        try:
            args = child.cmdline()
            if "surge.app.run" in args and child.status() != psutil.STATUS_ZOMBIE:
                found[int(args[-2])] = (child.pid, int(args[-1]))
        except psutil.Error:  # gone meanwhile
            pass
    return found


def gateway_process_pids(master_pid: int) -> set[int]:
    return {pid for pid, _ in gateway_processes(master_pid).values()}


def rss_of(pid: int, children: bool = False) -> int:
    """Resident memory of `pid` in bytes (plus its descendants' with `children=True`)."""
    process = psutil.Process(pid)
    total = process.memory_info().rss
    if children:
        for child in process.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.NoSuchProcess:
                pass
    return total


def process_gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie waiting for its parent counts as gone).

    The check and the status read are one step: a process can exit between
    `pid_exists` and `Process(pid)`, which is how a two-call version failed in CI."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class ManagedProcess:
    """One child process with its output in `<log_dir>/<label>.out|.err`."""

    def __init__(self, label: str, argv: Sequence[str], log_dir: Path,
                 env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.label = label
        self.argv = list(argv)
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.stdout_path = log_dir / f"{label}.out"
        self.stderr_path = log_dir / f"{label}.err"
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            # A new session: signals sent to the test runner's terminal do not reach it, and
            # the whole group can be killed at once.
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=err, env=self.env,
                                         cwd=self.cwd, start_new_session=True)
        _live.add(self)

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.label} was never started"
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL the process group, like a crash or the OOM killer; no cleanup runs."""
        self._signal_group(signal.SIGKILL)
        self._reap(STOP_TIMEOUT)

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
        self._signal_group(signal.SIGKILL)  # children it may have left behind
        self._reap(STOP_TIMEOUT)
        return self.proc.returncode

    def send_signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def logs(self) -> str:
        return (f"--- {self.label} stdout (tail) ---\n{tail(self.stdout_path)}\n"
                f"--- {self.label} stderr (tail) ---\n{tail(self.stderr_path)}")

    def fail(self, why: str) -> ProcessFailed:
        """Stop the process and build the error to raise, with the output tails in it."""
        self.terminate(1.0)
        return ProcessFailed(f"{self.label}: {why}\n{self.logs()}")

    def _signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _reap(self, timeout: float) -> None:
        assert self.proc is not None
        try:
            self.proc.wait(timeout)
        finally:
            _live.discard(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.terminate()


class UpstreamProcess(ManagedProcess):
    """One `support.upstream_app` replica on a fixed port, which survives `restart()`."""

    def __init__(self, name: str, port: int, log_dir: Path, env: dict[str, str] | None = None,
                 host: str = "127.0.0.1") -> None:
        self.name = name
        self.host = host
        self.port = port
        self.sick_file = log_dir / f"upstream-{name}.sick"
        pythonpath = os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")]))
        env = {"PYTHONPATH": pythonpath, "UPSTREAM_NAME": name,
               "UPSTREAM_SICK_FILE": str(self.sick_file), **(env or {})}
        argv = [sys.executable, "-m", "support.upstream_app", "--host", host, "--port", str(port),
                "--name", name]
        super().__init__(f"upstream-{name}", argv, log_dir, env)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def start(self) -> None:
        self.spawn()

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not port_open(self.host, self.port):
            if not self.running:
                raise self.fail(f"exited with {self.proc.returncode} before listening")
            if time.monotonic() > deadline:
                raise self.fail(f"not listening on {self.address} after {timeout}s")
            time.sleep(0.02)

    def restart(self) -> None:
        """Stop it (if alive) and start it again on the same port; returns once it listens."""
        if self.running:
            self.terminate()
        self.start()
        self.wait_ready()

    def make_sick(self) -> None:
        """From now on its `/healthz` answers 503 (traffic endpoints still work)."""
        self.sick_file.touch()

    def make_healthy(self) -> None:
        self.sick_file.unlink(missing_ok=True)


def start_upstreams(n: int, tmp_path: Path, *, env: dict[str, str] | None = None,
                    names: Sequence[str] | None = None) -> list[UpstreamProcess]:
    """Start `n` replicas in parallel on free ports; return once all of them listen.

    `env` is added to each replica's environment (e.g. `UPSTREAM_RECORD_FILE`). Names default
    to `u0`, `u1`, ... and are what `/name` answers. Stop them with `stop_all`."""
    names = list(names or [f"u{i}" for i in range(n)])
    assert len(names) == n, "one name per replica"
    fleet = [UpstreamProcess(name, port, tmp_path, env)
             for name, port in zip(names, free_ports(len(names)), strict=True)]
    try:
        for upstream in fleet:
            upstream.start()
        for upstream in fleet:
            upstream.wait_ready()
    except BaseException:
        stop_all(fleet)
        raise
    return fleet


def stop_all(processes: Sequence[ManagedProcess]) -> None:
    for process in processes:
        process.terminate()


class GatewayProcess(ManagedProcess):
    """`surge up FILE` as a real process; `url` is its first listener, `admin_url` its admin API."""

    def __init__(self, config_path: Path, log_dir: Path, *, env: dict[str, str] | None = None,
                 command_prefix: Sequence[str] = (), label: str = "gateway") -> None:
        self.config_path = config_path
        gateway = (yaml.safe_load(config_path.read_text()) or {}).get("gateway") or {}
        listen = gateway.get("listen", "127.0.0.1:8000")
        self.listen = listen[0] if isinstance(listen, list) else str(listen)
        self.admin = str(gateway.get("admin", "127.0.0.1:9000"))
        argv = [*command_prefix, sys.executable, "-m", "surge.cli", "up", str(config_path)]
        super().__init__(label, argv, log_dir, env, cwd=config_path.parent)

    @property
    def url(self) -> str:
        return f"http://{self.listen}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.admin}"

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Return once the admin `/healthz` answers 200 and the first listener accepts."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        with httpx.Client(timeout=1.0) as client:
            while True:
                if not self.running:
                    raise self.fail(f"exited with {self.proc.returncode} before becoming ready")
                try:
                    response = client.get(f"{self.admin_url}/healthz")
                    if response.status_code == 200 and port_open(*_dialable(self.listen)):
                        return
                    last = f"admin /healthz answered {response.status_code}"
                except httpx.TransportError as exc:
                    last = f"admin /healthz: {exc!r}"
                if time.monotonic() > deadline:
                    raise self.fail(f"not ready after {timeout}s ({last})")
                time.sleep(0.05)

    def reload(self) -> None:
        """SIGHUP: re-read the config file (write the new text to `config_path` first)."""
        self.send_signal(signal.SIGHUP)


def _dialable(address: str) -> tuple[str, int]:
    """`host:port` of a listener as a client dials it (a wildcard host means loopback)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host), int(port)


@functools.cache
def surge_up_available() -> bool:
    """Whether this interpreter's `surge` has the `up` command (the gateway is built)."""
    done = subprocess.run([sys.executable, "-m", "surge.cli", "up", "--help"],
                          capture_output=True, check=False)
    return done.returncode == 0


def start_gateway(config_text: str, tmp_path: Path, *, env: dict[str, str] | None = None,
                  command_prefix: Sequence[str] = (), name: str = "surge",
                  timeout: float = START_TIMEOUT) -> GatewayProcess:
    """Write `config_text` to `tmp_path/<name>.yaml`, run `surge up` on it, wait until ready.

    Raises ProcessFailed, with the tails of its stdout and stderr, if it exits or does not
    become ready. `command_prefix` wraps the command (e.g. `["taskset", "-c", "1"]`)."""
    config_path = tmp_path / f"{name}.yaml"
    config_path.write_text(config_text)
    gateway = GatewayProcess(config_path, tmp_path, env=env, command_prefix=command_prefix,
                             label=name)
    gateway.spawn()
    gateway.wait_ready(timeout)
    return gateway


@atexit.register
def _kill_leftovers() -> None:
    for process in list(_live):
        process.kill9()
