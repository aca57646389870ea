"""The chaos suite (issue #3): a gateway in front of two healthy replicas and one real
misbehaving upstream process (refuses, resets, hangs, is slow, answers garbage, closes idle
keep-alive connections, dies and comes back) under a steady mixed load of GETs, POSTs without
an idempotency key and POSTs with one. Each scenario runs once per module (`support.chaos`)
and every test reads its report.

Asserted, as the issue requires: no non-idempotent request is ever delivered twice; the gateway
keeps serving; retries stay under the budget; no idempotent request fails while a healthy
upstream remains; no request loses the race with an upstream's idle close (one that could
not be replayed, a POST without a key, is never sent on a connection idle long enough to be
closing: a clean close before any answer looks the same as an upstream that read it and
died, so it could not be retried). Measured and
printed, not asserted: each scenario's p99 to the healthy replicas against the no-fault run's
(the issue asks for at most 2x). See the table with
`.venv/bin/python -m pytest tests/gateway/test_chaos.py -s`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.chaos.harness import SCENARIOS, ScenarioReport, run_scenario

pytestmark = pytest.mark.integration

DURATION = 2.0                # seconds of load after the fault goes on
BUDGET_PERCENT = 20           # the default `retry.budget_percent`
RETRY_FLOOR = 10              # retries the budget allows however little traffic there was
FAULTS = [s for s in SCENARIOS if s != "none"]
# Where an idempotent request still fails today although healthy replicas remain, and why.
KNOWN_GAPS: dict[str, str] = {}  # scenario -> why it does not hold yet

_table: dict[str, ScenarioReport] = {}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], ScenarioReport]]:
    """`report(scenario)`: the scenario's report, run on first use."""
    base: Path = tmp_path_factory.mktemp("chaos")

    def get(scenario: str) -> ScenarioReport:
        if scenario not in _table:
            _table[scenario] = run_scenario(scenario, base / scenario, duration=DURATION)
            print("\n" + _table[scenario].describe())
        return _table[scenario]

    yield get
    _print_table()


def test_without_faults_the_mixed_load_fails_nothing(report):
    baseline = report("none")
    assert baseline.sent > 100
    assert sum(baseline.failed_by_kind.values()) == 0, baseline.describe()
    assert baseline.duplicated == 0


@pytest.mark.parametrize("scenario", FAULTS)
def test_no_non_idempotent_request_is_ever_delivered_twice(report, scenario):
    result = report(scenario)
    assert result.duplicated == 0, result.describe()


@pytest.mark.parametrize("scenario", FAULTS)
def test_the_gateway_keeps_serving_through_the_fault(report, scenario):
    result = report(scenario)
    # Healthy replicas answered all along: most of the load got through.
    answered = result.sent - sum(result.failed_by_kind.values())
    assert answered >= 0.9 * result.sent, result.describe()
    assert result.served_after == result.PROBES, result.describe()


@pytest.mark.parametrize("scenario", [
    pytest.param(s, marks=pytest.mark.xfail(reason=KNOWN_GAPS[s], strict=False))
    if s in KNOWN_GAPS else s for s in FAULTS])
def test_no_idempotent_request_fails_while_a_healthy_upstream_remains(report, scenario):
    result = report(scenario)
    assert result.failed_by_kind["get"] == 0, result.describe()
    assert result.failed_by_kind["idem"] == 0, result.describe()


def test_no_request_loses_the_idle_keep_alive_race(report):
    result = report("idle-close")
    assert sum(result.failed_by_kind.values()) == 0, result.describe()


@pytest.mark.parametrize("scenario", FAULTS)
def test_retries_stay_within_the_budget(report, scenario):
    result = report(scenario)
    assert result.retried <= result.sent * BUDGET_PERCENT / 100 + RETRY_FLOOR, result.describe()


def _print_table() -> None:
    """The whole run as one table, with what is measured but not yet asserted."""
    if not _table:
        return
    print("\n\nChaos suite (tests/gateway/test_chaos.py)\n" + ScenarioReport.HEADER)
    for scenario in SCENARIOS:
        if scenario in _table:
            print(_table[scenario].row())
    baseline = _table.get("none")
    if baseline is None:
        return
    print(f"not asserted yet: p99 to healthy replicas within 2x of the no-fault run "
          f"({baseline.p99 * 1000:.1f} ms)")
    for scenario, result in _table.items():
        ratio = result.p99 / baseline.p99 if baseline.p99 else float("nan")
        verdict = "ok" if ratio <= 2 else "OVER 2x"
        print(f"  {scenario:<11} p99 {result.p99 * 1000:7.1f} ms = {ratio:4.1f}x  {verdict}; "
              f"retries {result.retry_share:.1%} of requests (budget {BUDGET_PERCENT}%)")
