"""What the gateway's log says about active health checks, read from a real `surge up`'s stderr:
an upstream that fails its first check, or falls later, is one WARNING naming its service, its
address and why (`connection refused`, `timeout`, `status 500`), not one a round; its recovery is
one INFO line. With `workers: 2` each worker checks for itself, so each says it once, under its
own `worker-N` prefix."""

from __future__ import annotations

import re
import time

import pytest

from gateway.stack import eventually, service, surge_yaml
from support.processes import GatewayProcess, free_port

pytestmark = pytest.mark.integration

ROUNDS = 10  # checks every 200 ms, watched for two seconds


def health(path: str = "/healthz", **overrides: str | int) -> dict[str, str | int]:
    return {"path": path, "interval": "200ms", "timeout": "200ms", "rise": 1, "fall": 2,
            **overrides}


def lines(gw: GatewayProcess, pattern: str) -> list[str]:
    return [line for line in gw.stderr_path.read_text().splitlines() if re.search(pattern, line)]


def once_per_worker(gw: GatewayProcess, pattern: str, workers: int) -> list[str]:
    """The matching lines, after checking there is exactly one per gateway process."""
    found = lines(gw, pattern)
    prefixes = sorted(re.search(r"(worker-\d+ )?surge\.upstreams", line).group(1) or ""
                      for line in found)
    expected = [f"worker-{i} " for i in range(workers)] if workers > 1 else [""]
    assert prefixes == expected, "\n".join(found) or f"no line matches {pattern!r}"
    return found


@pytest.mark.parametrize("workers", [1, 2])
def test_an_upstream_failing_its_first_check_is_one_warning_with_the_reason(
        upstreams, gateway, workers):
    good, hung = upstreams(2)
    nobody = f"127.0.0.1:{free_port()}"
    gw = gateway(surge_yaml(
        {"refused": service([nobody], health=health()),
         "broken": service([good], health=health("/status/500")),
         "hung": service([hung], health=health("/slow?ms=2000"))},
        [{"prefix": "/", "service": "refused"}], workers=workers))
    time.sleep(ROUNDS * 0.2)
    for name, address, reason in (("refused", nobody, "connection refused"),
                                  ("broken", good.address, "status 500"),
                                  ("hung", hung.address, "timeout")):
        (line, *_) = once_per_worker(
            gw, rf"service {name}: upstream {re.escape(address)} failed its first", workers)
        assert " WARNING " in line and f"({reason})" in line, line
    assert not lines(gw, "Traceback")


@pytest.mark.parametrize("workers", [1, 2])
def test_an_upstream_that_falls_later_is_one_warning_and_its_recovery_one_info(
        upstreams, gateway, workers):
    (sick, dead) = upstreams(2)
    gw = gateway(surge_yaml({"app": service([sick, dead], health=health())},
                            [{"prefix": "/", "service": "app"}], workers=workers))
    sick.make_sick()
    dead.kill9()
    eventually(lambda: len(lines(gw, "is unhealthy")) == 2 * workers, what="both fall")
    time.sleep(ROUNDS * 0.2)
    (line, *_) = once_per_worker(gw, rf"upstream {sick.address} is unhealthy", workers)
    assert " WARNING " in line and "failed 2 health checks in a row (the last: status 503)" in line
    (line, *_) = once_per_worker(gw, rf"upstream {dead.address} is unhealthy", workers)
    assert " WARNING " in line and "(the last: connection refused)" in line, line
    sick.make_healthy()
    eventually(lambda: len(lines(gw, "is healthy again")) == workers, what="recovery logged")
    time.sleep(ROUNDS * 0.2)
    (line, *_) = once_per_worker(gw, rf"upstream {sick.address} is healthy again", workers)
    assert " INFO " in line
