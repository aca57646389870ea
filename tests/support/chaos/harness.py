"""Chaos scenarios end to end: a gateway (`surge up`) in front of two healthy `upstream_app`
replicas (`h0`, `h1`) and one chaos upstream (`chaos`, see `support.chaos.server`), a steady
mixed load, the fault switched on after a warm-up, and a `ScenarioReport` of what clients saw.

The chaos upstream behaves until the fault goes on, so it passes its first health checks and
takes a share of traffic: the report measures the moment it breaks, and what the gateway's
health checks, outlier detection and retries make of it. Scenario `none` is the no-fault
baseline (the chaos upstream stays well); `flap` kill -9s and restarts a well-behaved one.

Every replica appends the requests it received to one record file; a non-idempotent request
(`post-N`) found there twice is a duplicated delivery."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from gateway.stack import eventually, fast_health, metric, service, surge_yaml, upstream_views
from support.chaos.load import KINDS, NON_IDEMPOTENT, MixedLoad, percentile
from support.processes import (
    GatewayProcess,
    ManagedProcess,
    UpstreamProcess,
    free_port,
    start_gateway,
    start_upstreams,
    stop_all,
)

SCENARIOS = ("none", "refuse", "reset", "hang", "slow", "garbage", "idle-close", "flap")
HEALTHY = frozenset({"h0", "h1"})
SERVICE = "app"
# A hung upstream costs a request this long, not the default 30 s; the slow one's 5 s answers
# are let through, so its scenario measures slowness rather than timeouts.
UPSTREAM_TIMEOUT = {"slow": "10s"}
DEFAULT_UPSTREAM_TIMEOUT = "1s"
FLAP_UP, FLAP_DOWN = 1.0, 1.0


class ChaosUpstream(UpstreamProcess):
    """A `support.chaos.server` process; `restart()` and `kill9()` work as for any upstream."""

    def __init__(self, mode: str, port: int, log_dir: Path, record_file: Path,
                 name: str = "chaos") -> None:
        super().__init__(name, port, log_dir)
        self.fault_file = log_dir / f"{name}.fault"
        self.argv = [sys.executable, "-m", "support.chaos.server", "--mode", mode,
                     "--host", self.host, "--port", str(port), "--name", name,
                     "--record", str(record_file), "--fault-file", str(self.fault_file)]

    def fault_on(self) -> None:
        self.fault_file.touch()


class Flapper(threading.Thread):
    """Kill -9 an upstream and bring it back, over and over, until stopped."""

    def __init__(self, upstream: UpstreamProcess, up: float = FLAP_UP,
                 down: float = FLAP_DOWN) -> None:
        super().__init__(name="flapper", daemon=True)
        self.upstream, self.up, self.down = upstream, up, down
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.up):
            self.upstream.kill9()
            if self.stopped.wait(self.down):
                break
            self.upstream.restart()
        if not self.upstream.running:
            self.upstream.restart()  # left as found: stop_all expects a live process

    def stop(self) -> None:
        self.stopped.set()
        self.join(15)


@dataclass
class ScenarioReport:
    scenario: str
    sent: int
    sent_by_kind: dict[str, int]
    failed_by_kind: dict[str, int]
    retried: float
    duplicated: int
    healthy_latencies: list[float] = field(repr=False)
    all_latencies: list[float] = field(repr=False)
    failures: list[str] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    gateway_failures: dict[str, float] = field(default_factory=dict)
    # failed non-idempotent requests no upstream received: a retry would have been safe
    undelivered_failures: int = 0
    served_after: int = 0      # of PROBES GETs sent once the load stopped, answered 200

    PROBES = 10

    @property
    def p50(self) -> float:
        return percentile(self.healthy_latencies, 0.50)

    @property
    def p99(self) -> float:
        return percentile(self.healthy_latencies, 0.99)

    @property
    def p99_all(self) -> float:
        return percentile(self.all_latencies, 0.99)

    @property
    def retry_share(self) -> float:
        return self.retried / self.sent if self.sent else 0.0

    HEADER = (f"{'scenario':<11} {'sent':>6} {'fail GET':>8} {'fail POST':>9} "
              f"{'fail idem':>9} {'retried':>7} {'dup':>4} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'p99 all':>8}")

    def row(self) -> str:
        f = self.failed_by_kind
        return (f"{self.scenario:<11} {self.sent:>6} {f['get']:>8} {f['post']:>9} "
                f"{f['idem']:>9} {self.retried:>7.0f} {self.duplicated:>4} "
                f"{self.p50 * 1000:>7.1f} {self.p99 * 1000:>7.1f} {self.p99_all * 1000:>8.1f}")

    def describe(self) -> str:
        lines = [self.HEADER, self.row(), f"  sent by kind: {self.sent_by_kind}",
                 f"  statuses: {self.statuses}  gateway failures: {self.gateway_failures}  "
                 f"probes answered after the load: {self.served_after}/{self.PROBES}",
                 f"  failed POSTs without a key that no upstream received: "
                 f"{self.undelivered_failures} of {self.failed_by_kind[NON_IDEMPOTENT]}"]
        lines += [f"  {failure}" for failure in self.failures]
        return "\n".join(lines)


def chaos_config(fleet: list[UpstreamProcess], upstream_timeout: str = DEFAULT_UPSTREAM_TIMEOUT,
                 **service_options: object) -> str:
    """surge.yaml for the scenarios: fast health checks, quick ejection, short timeouts."""
    options = {"health": fast_health(), "outlier": {"consecutive_failures": 3, "ejection": "2s"},
               "retry": {"attempts": 2}, **service_options}
    return surge_yaml({SERVICE: service(fleet, **options)}, [{"prefix": "/", "service": SERVICE}],
                      timeouts={"connect": "500ms", "upstream": upstream_timeout})


def deliveries(record_file: Path) -> Counter[str]:
    """How many times the upstreams received each request id, from the shared record file."""
    counts: Counter[str] = Counter()
    if record_file.exists():
        for line in record_file.read_text().splitlines():
            counts[json.loads(line)["request_id"]] += 1
    return counts


def run_scenario(scenario: str, directory: Path, *, duration: float = 3.0, warmup: float = 0.5,
                 rate: float = 150, concurrency: int = 6, label: str | None = None,
                 load_class: type[MixedLoad] = MixedLoad,
                 alongside: Callable[[GatewayProcess], AbstractContextManager[object]] | None
                 = None) -> ScenarioReport:
    """Run one scenario in `directory` (logs and records land there) and report it.

    `alongside(gateway)`, when given, is a context held open while the load runs (e.g. slow
    clients); `label` names the report (default: the scenario); `load_class` sends the load
    (`AsyncMixedLoad` for higher rates)."""
    assert scenario in SCENARIOS, scenario
    directory.mkdir(parents=True, exist_ok=True)
    record_file = directory / "records.jsonl"
    record_file.unlink(missing_ok=True)  # request ids start over with each run
    started: list[ManagedProcess] = []
    flapper: Flapper | None = None
    try:
        mode = "ok" if scenario in ("none", "flap") else scenario
        chaos = ChaosUpstream(mode, free_port(), directory, record_file)
        chaos.fault_file.unlink(missing_ok=True)
        started.append(chaos)
        chaos.start()  # its interpreter starts while the healthy replicas' do
        healthy = start_upstreams(2, directory, names=sorted(HEALTHY),
                                  env={"UPSTREAM_RECORD_FILE": str(record_file)})
        started += healthy
        chaos.wait_ready()
        timeout = UPSTREAM_TIMEOUT.get(scenario, DEFAULT_UPSTREAM_TIMEOUT)
        gw = start_gateway(chaos_config([*healthy, chaos], timeout), directory)
        started.append(gw)
        eventually(lambda: all(u["healthy"] for u in upstream_views(gw.admin_url, SERVICE)
                               .values()), what="every upstream admitted by its health checks")
        with alongside(gw) if alongside else nullcontext(), \
                load_class(gw.url, concurrency=concurrency, rate=rate) as load:
            time.sleep(warmup)
            if scenario == "flap":
                flapper = Flapper(chaos)
                flapper.start()
            elif scenario != "none":
                chaos.fault_on()
            time.sleep(duration)
        if flapper is not None:
            flapper.stop()
        assert gw.running, "the gateway died under chaos:\n" + gw.logs()
        report = _report(label or scenario, load, gw.admin_url, record_file)
        with httpx.Client(timeout=10.0) as client:
            report.served_after = sum(client.get(f"{gw.url}/name").status_code == 200
                                      for _ in range(report.PROBES))
        return report
    finally:
        if flapper is not None:
            flapper.stop()
        stop_all(started)


def _report(scenario: str, load: MixedLoad, admin_url: str, record_file: Path) -> ScenarioReport:
    failed = {reason: value for reason, value in _failed_by_reason(admin_url).items() if value}
    received = deliveries(record_file)
    posts = [n for request_id, n in received.items()
             if request_id.startswith(f"{NON_IDEMPOTENT}-")]
    return ScenarioReport(
        scenario=scenario, sent=load.sent,
        sent_by_kind={kind: load.sent_of(kind) for kind in KINDS},
        failed_by_kind={kind: load.failed_of(kind) for kind in KINDS},
        retried=metric(admin_url, "surge_retries_total", service=SERVICE),
        duplicated=sum(1 for n in posts if n > 1),
        undelivered_failures=len(load.failed_ids(NON_IDEMPOTENT) - received.keys()),
        healthy_latencies=load.latencies_via(set(HEALTHY)),
        all_latencies=[s.latency for s in load.samples if s.ok],
        failures=list(load.failures), statuses={str(k): v for k, v in load.statuses.items()},
        gateway_failures=failed)


def _failed_by_reason(admin_url: str) -> dict[str, float]:
    text = httpx.get(f"{admin_url}/metrics").text
    return {sample.labels["reason"]: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == "surge_requests_failed_total"}
