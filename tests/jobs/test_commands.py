"""`surge jobs ...` where a user gets it wrong or the broker is away: one line saying what,
no traceback, exit 2 for bad input and 1 for what is not there (issue 10, point 7)."""

from __future__ import annotations

import pytest

from support.cli import fails_in_one_line, surge
from support.processes import free_port

pytestmark = pytest.mark.integration


def test_retry_of_an_unknown_id_says_it_is_unknown(tmp_path):
    broker = f"sqlite:///{tmp_path / 'jobs.db'}"
    line = fails_in_one_line(surge("jobs", "retry", "no-such-id", "--broker", broker,
                                   cwd=tmp_path), 1)
    assert line == "surge: no dead job has the id 'no-such-id' (`surge jobs dead` lists them)"


@pytest.mark.parametrize("action", ["stats", "dead", "purge"])
def test_a_broker_that_cannot_be_reached_is_one_line(tmp_path, action):
    port = free_port()
    done = surge("jobs", action, "--broker", f"redis://127.0.0.1:{port}/0", cwd=tmp_path)
    line = fails_in_one_line(done, 1)
    assert line.startswith(f"surge: the broker cannot be reached: Redis broker at "
                           f"redis://127.0.0.1:{port}/0: ")
    assert "Connection refused" in line


def test_a_broker_url_of_no_known_kind_is_bad_input(tmp_path):
    line = fails_in_one_line(surge("jobs", "stats", "--broker", "rabbit://h", cwd=tmp_path), 2)
    assert line == ("surge: unknown broker URL 'rabbit://h': expected memory://, "
                    "sqlite:///PATH or redis://")


def test_neither_a_queue_nor_a_broker_is_bad_input(tmp_path):
    assert fails_in_one_line(surge("jobs", "stats", cwd=tmp_path), 2) == (
        "surge: give MODULE:queue or --broker URL")
