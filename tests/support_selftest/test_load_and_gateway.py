"""LoadLoop counts every request and every failure; start_gateway runs `surge up` for real and
reports why when it cannot."""

from __future__ import annotations

import time

import httpx
import pytest

from support.load import LoadLoop
from support.processes import ProcessFailed, free_port, start_gateway, surge_up_available

pytestmark = pytest.mark.integration

def test_load_loop_counts_successes_against_a_healthy_replica(fleet):
    with LoadLoop(f"{fleet[0].url}/name", concurrency=3) as load:
        load.wait_for(60)
    assert load.sent >= 60
    assert load.failed == 0, load.summary()
    assert load.succeeded == load.sent == load.statuses[200]


def test_load_loop_counts_non_2xx_as_failures_and_keeps_the_first_few(fleet):
    with LoadLoop(f"{fleet[0].url}/status/503", concurrency=2, keep_failures=3) as load:
        load.wait_for(20)
    assert load.failed == load.sent >= 20
    assert len(load.failures) == 3
    assert "503" in load.failures[0]


def test_load_loop_counts_transport_errors_when_a_replica_dies_under_load(upstreams):
    (upstream,) = upstreams(1)
    with LoadLoop(f"{upstream.url}/name", concurrency=2, rate=200, timeout=1.0) as load:
        load.wait_for(20)
        upstream.kill9()
        failed_at = load.sent
        load.wait_for(failed_at + 10)
    assert load.succeeded >= 20
    assert load.failed >= 10
    assert any("ConnectError" in failure for failure in load.failures), load.summary()


def test_load_loop_paces_to_the_asked_rate(fleet):
    with LoadLoop(f"{fleet[1].url}/name", concurrency=2, rate=50) as load:
        time.sleep(1.0)
    # A wide band: this checks the pacing exists, not how precise it is.
    assert 20 <= load.sent <= 80, load.summary()


def test_load_loop_sends_the_method_body_and_headers_it_was_given(fleet):
    with LoadLoop(f"{fleet[0].url}/echo", concurrency=1, method="POST", content=b"ping",
                  headers={"X-Test": "1"}) as load:
        load.wait_for(5)
    assert load.failed == 0, load.summary()


def test_start_gateway_fails_with_the_tail_of_its_stderr(tmp_path):
    # Today `surge up` may not exist yet; later the config is rejected. Either way the helper
    # must fail fast with the gateway's own words in the message.
    config = (f"gateway:\n  listen: 127.0.0.1:{free_port()}\n  admin: 127.0.0.1:{free_port()}\n"
              "routes:\n  - {prefix: /, service: nowhere}\n")
    started = time.monotonic()
    with pytest.raises(ProcessFailed) as failure:
        start_gateway(config, tmp_path, timeout=20)
    assert time.monotonic() - started < 20
    assert "surge stderr (tail)" in str(failure.value)
    assert (tmp_path / "surge.yaml").read_text() == config


@pytest.mark.skipif(not surge_up_available(), reason="the gateway (surge up) is not built yet")
def test_start_gateway_proxies_to_the_fleet_and_stops_on_teardown(fleet, gateway):
    listen, admin = free_port(), free_port()
    addresses = "".join(f"      - {u.address}\n" for u in fleet)
    gw = gateway(
        f"gateway:\n  listen: 127.0.0.1:{listen}\n  admin: 127.0.0.1:{admin}\n"
        f"  access_log: off\nservices:\n  app:\n    balance: round_robin\n"
        f"    upstreams:\n{addresses}routes:\n  - {{prefix: /, service: app}}\n"
    )
    names: set[str] = set()
    deadline = time.monotonic() + 10  # each upstream gets traffic once its first check passes
    while names != {"a", "b"} and time.monotonic() < deadline:
        names.add(httpx.get(f"{gw.url}/name").text)
    assert names == {"a", "b"}, gw.logs()
    gw.terminate()
    assert not gw.running
