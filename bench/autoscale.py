"""Autoscaling benchmark, simulated half: a step from 20% to 200% of one replica's capacity,
run through surge's pure autoscaler policy twice, once with surge's defaults (2 s control
period, scale up at once by 4 replicas or 100% whichever is more, scale down after a 300 s
window one replica at a time, demand seen through a saturated CPU) and once with Kubernetes
HPA's defaults (15 s sync, 10% tolerance, 300 s scale-down window, scale up by max(4 pods,
100%) per 15 s, scale down by up to 100% per 15 s, and HPA's plain ratio: no demand estimate).
Both runs use the same service model and the same replica start-up time.

The service is simulated in 1 s steps: each replica serves `CAPACITY` requests/s (an M/M/1
queue per replica, p95 = ln(20) / (mu - lambda)), arrivals are Poisson-like around the load,
work beyond capacity waits in a backlog (its drain time adds to latency), and a new replica
takes `--startup` seconds to become ready (for part of a second, it serves that part). Ready
replicas report CPU %, answers/s, requests in flight and p95 each second; starting ones report
nothing (the policy counts them as idle for scale-up, as HPA does).

Prints, for both parameter sets: seconds from the step to the first scale-up decision, to the
moment the backlog stops growing (enough replicas serve), and until p95 is back under target;
the peak replica count, and scaling events during a 5-minute steady phase (minutes 10 to 15
after the step, the load steady at 200%). HPA's answer depends on where the step falls in its
15 s sync cycle, so the step is placed at each of 15 offsets (one per second) and the figures
are the mean and the worst over them; the events listed are those of the first offset.

    .venv/bin/python bench/autoscale.py [--seed N] [--startup SECONDS] [--targets cpu]
                                        [--ablation]

`--targets cpu` drops the p95 target, leaving the CPU target alone: the case where a
saturated CPU (it cannot pass 100%) hides how far demand went. `--ablation` adds rows for
surge with its scale-up step back at plain doubling, without the demand estimate, and both
(the policy as it was before 2026-11-26), to show what each change is worth.

The other half of the claim, measured on a real gateway and real replicas of the quickstart
app under `surge load`'s generator (seconds to decision, p95 recovery, steady-phase events and
failed requests), is `bench/autoscale_real.py`.
"""

from __future__ import annotations

import argparse
import math
import platform
import random
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from surge.scaling.policy import Sample, ScalingPolicy
from surge.scaling.spec import PolicySpec, Rule, Step, Targets

CAPACITY = 100.0  # requests/s one replica serves (10 ms of CPU each)
STEP_AT = 61  # the load steps from 20% to 200% of one replica's capacity here (+ offset)
OFFSETS = range(15)
LOW, HIGH = 0.2 * CAPACITY, 2.0 * CAPACITY
P95_TARGET = 0.25  # seconds
STEADY = (600, 900)  # the 5-minute steady phase, in seconds after the step
TARGETS = {"cpu+p95": Targets(cpu_percent=70, p95_latency=P95_TARGET),
           "cpu": Targets(cpu_percent=70)}

SURGE = PolicySpec(min=1, max=10, targets=TARGETS["cpu+p95"])  # the defaults of surge.yaml
HPA = PolicySpec(
    min=1, max=10, targets=TARGETS["cpu+p95"], control_period=15.0, tolerance=0.1,
    scale_up=Rule(0.0, Step(pods=4, percent=100)),
    scale_down=Rule(300.0, Step(percent=100)),
    demand=False,  # HPA's ratio sees the CPU as measured, capped at 100%
)


@dataclass
class Run:
    name: str
    first_decision: float | None = None
    backlog_peak: float | None = None  # when the backlog stopped growing: enough replicas
    p95_recovered: float | None = None
    peak: int = 1
    steady_events: int = 0
    events: list[tuple[int, int, int]] = field(default_factory=list)  # (t, from, to)


def p95_latency(rho: float, backlog: float, replicas: int) -> float:
    """An M/M/1 replica's p95 response time at utilisation `rho`, plus the wait to drain the
    backlog across all replicas."""
    if replicas == 0:
        return math.inf
    service = math.log(20) / (CAPACITY * (1 - min(rho, 0.98)))
    return service + backlog / (replicas * CAPACITY)


def simulate(name: str, spec: PolicySpec, seed: int, step_at: int, startup: float) -> Run:
    """One run; `startup` is how long a new replica takes to become ready (a replica ready
    part-way through a second serves for that part of it)."""
    rng = random.Random(seed)
    policy, run = ScalingPolicy(spec), Run(name)
    ready, starting = 1, []  # starting: the times those replicas become ready
    backlog, window = 0.0, []
    period = int(spec.control_period)
    exceeded, peak_backlog = False, 0.0
    for t in range(1, step_at + STEADY[1] + 1):
        # The second [t-1, t): arrivals, service, the backlog, what each ready replica sees.
        serving = ready + sum(t - at for at in starting if at < t)
        ready += sum(1 for at in starting if at <= t)
        starting = [at for at in starting if at > t]
        load = HIGH if t > step_at else LOW
        arrivals = max(0.0, rng.gauss(load, math.sqrt(load)))
        capacity = serving * CAPACITY
        served = min(arrivals + backlog, capacity)
        backlog = arrivals + backlog - served
        rho = served / capacity if capacity else 1.0
        p95 = p95_latency(rho, backlog, serving)
        window = [s for s in window if s.at > t - spec.control_period]
        window += [Sample(at=t, replica=f"r{i}", cpu_percent=100 * rho, p95_latency=p95,
                          request_rate=served / ready, inflight=rho + backlog / ready)
                   for i in range(ready)]
        if t > step_at:
            if backlog > peak_backlog:
                peak_backlog, run.backlog_peak = backlog, t - step_at
            exceeded = exceeded or p95 > P95_TARGET
            if exceeded and run.p95_recovered is None and p95 <= P95_TARGET:
                run.p95_recovered = t - step_at
        if t % period:
            continue
        current = ready + len(starting)
        desired = policy.decide(window, current, float(t)).desired
        if desired == current:
            continue
        run.events.append((t, current, desired))
        if STEADY[0] <= t - step_at < STEADY[1]:
            run.steady_events += 1
        if desired > current:
            if t > step_at and run.first_decision is None:
                run.first_decision = t - step_at
            starting += [t + startup] * (desired - current)
        else:
            for _ in range(current - desired):  # stop starting replicas first
                if starting:
                    starting.pop()
                else:
                    ready -= 1
        run.peak = max(run.peak, desired)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--startup", type=float, default=5,
                        help="seconds until a replica is ready")
    parser.add_argument("--targets", choices=sorted(TARGETS), default="cpu+p95")
    parser.add_argument("--ablation", action="store_true",
                        help="also run surge with each change of 2026-11-26 undone")
    args = parser.parse_args()
    targets = TARGETS[args.targets]
    print(f"# bench/autoscale.py --seed {args.seed} --startup {args.startup:g} --targets "
          f"{args.targets}  (SIMULATED; {datetime.now(UTC):%Y-%m-%d}, "
          f"{platform.python_implementation()} {platform.python_version()})")
    print(f"# step {LOW:.0f} -> {HIGH:.0f} req/s; one replica serves {CAPACITY:.0f} req/s; "
          f"startup {args.startup:g}s; targets cpu 70%"
          + (f", p95 {P95_TARGET * 1000:.0f}ms" if targets.p95_latency else "")
          + f"; mean / worst over {len(OFFSETS)} step offsets")
    print(f"{'':16} {'decision (s)':>13} {'enough (s)':>11} {'p95 back (s)':>13} {'peak':>5} "
          f"{'steady events':>14}")
    recovered = {}
    runs_of = [("surge defaults", SURGE), ("HPA defaults", HPA)]
    if args.ablation:
        doubling = Rule(0.0, Step(percent=100))  # the scale-up default until 2026-11-26
        runs_of += [("surge, doubling", replace(SURGE, scale_up=doubling)),
                    ("surge, no demand", replace(SURGE, demand=False)),
                    ("surge before", replace(SURGE, scale_up=doubling, demand=False))]
    for name, spec in runs_of:
        spec = replace(spec, targets=targets)
        runs = [simulate(name, spec, args.seed, STEP_AT + offset, args.startup)
                for offset in OFFSETS]
        back = [r.p95_recovered for r in runs]
        recovered[name] = _mean(back)
        print(f"{name:16} {_spread([r.first_decision for r in runs]):>13} "
              f"{_spread([r.backlog_peak for r in runs]):>11} {_spread(back):>13} "
              f"{max(r.peak for r in runs):>5} {_spread([r.steady_events for r in runs]):>14}")
        events = " ".join(f"{t - STEP_AT}:{a}->{b}" for t, a, b in runs[0].events)
        print(f"{'':16} events (s after step: from->to): {events}")
    surge, hpa = recovered["surge defaults"], recovered["HPA defaults"]
    if surge and hpa:
        print(f"p95 back under target {hpa / surge:.2f}x sooner with surge's defaults (means)")


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if len(known) == len(values) else None


def _spread(values: list) -> str:
    mean = _mean(values)
    return "never" if mean is None else f"{mean:.1f} / {max(values):.0f}"


if __name__ == "__main__":
    main()
