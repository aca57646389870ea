"""The client another process's admin API is reached with (the master of `workers: N` uses it on
its gateway processes), over real sockets: a peer that closes without answering is a
connection error, which the master's loops expect, never an IndexError that would end them; a
problem read back is raised with the problem it came with."""

from __future__ import annotations

import asyncio
import json

import pytest

from surge.admin.client import call, raise_for_problem
from surge.admin.http import error_response
from surge.errors import (
    BrokerError,
    ClientError,
    ConfigError,
    JobError,
    NotFound,
    StoreError,
    SurgeError,
)
from surge.observe.problem import BAD_REQUEST, INTERNAL, NOT_FOUND


async def _closing_server(reply: bytes) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.write(reply)
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


@pytest.mark.parametrize("reply", [b"", b"HTTP/1.1", b"garbage\r\n\r\n"])
async def test_a_peer_closing_without_an_answer_is_a_connection_error(reply):
    server = await _closing_server(reply)
    port = server.sockets[0].getsockname()[1]
    async with server:
        with pytest.raises(ConnectionResetError, match=f"no HTTP answer from 127.0.0.1:{port}"):
            await call(port, "GET", "/api/services")


async def test_an_answer_is_its_status_and_body():
    server = await _closing_server(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}")
    async with server:
        assert await call(server.sockets[0].getsockname()[1], "GET", "/x") == (404, b"{}")


@pytest.mark.parametrize("error", [StoreError("redis down"), NotFound("no service 'x'"),
                                   JobError("bad cron"), BrokerError("broker down"),
                                   ClientError("malformed")])
def test_a_problem_read_back_is_passed_on_as_it_was(error: SurgeError) -> None:
    """The master of `workers: N` passes a gateway process's refusal on: with its own type and
    status (a 503 store-unavailable stays one, not a 500 `internal`)."""
    with pytest.raises(SurgeError) as raised:
        raise_for_problem(error.problem.status, error.document())
    assert raised.value.problem is error.problem
    passed_on = json.loads(error_response(raised.value).body)
    assert passed_on == json.loads(error.document())


@pytest.mark.parametrize(("status", "content", "problem"), [
    (404, b"not json", NOT_FOUND),
    (409, b'{"type": "https://example.com/other"}', BAD_REQUEST),
    (502, b"[]", INTERNAL),
])
def test_an_answer_not_of_ours_is_judged_by_its_status(status, content, problem) -> None:
    with pytest.raises(SurgeError) as raised:
        raise_for_problem(status, content)
    assert raised.value.problem is problem
    assert str(raised.value) == f"gateway process answered {status}"


def test_a_refused_config_is_a_config_error_with_its_problems() -> None:
    error = ConfigError(["routes[0].service: unknown service 'ap'"])
    with pytest.raises(ConfigError) as raised:
        raise_for_problem(400, error.document(problems=error.problems))
    assert raised.value.problems == error.problems
