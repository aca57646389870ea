"""API keys: format and hashing, one contract over every key store, the `surge keys` CLI as
a real subprocess, and a registry that picks changes up within a second."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from surge.errors import Unauthorized
from surge.ratelimit.identity import Identifier, TrustedProxies, client_address
from surge.ratelimit.key_stores import RedisKeyStore, SQLiteKeyStore
from surge.ratelimit.keys import (
    MemoryKeyStore,
    extract_api_key,
    generate_key,
    hash_key,
    well_formed,
)
from surge.ratelimit.registry import KeyRegistry
from surge.ratelimit.settings import RateLimitSettings


def test_a_new_key_is_recognisable_and_random():
    keys = {generate_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(k.startswith("sk_") and len(k) == 46 and well_formed(k) for k in keys)


@pytest.mark.parametrize("garbage", [
    "", "sk_", "sk_short", "pk_" + "a" * 43, "sk_" + "a" * 126, "sk_" + "a" * 40 + "!",
    "sk_" + "é" * 43, "sk_" + "a" * 40 + " x",
])
def test_garbage_keys_are_not_well_formed(garbage):
    assert not well_formed(garbage)


def test_the_key_is_read_from_bearer_or_x_api_key():
    assert extract_api_key({"authorization": "Bearer sk_abc"}.get) == "sk_abc"
    assert extract_api_key({"authorization": "bearer  sk_abc "}.get) == "sk_abc"
    assert extract_api_key({"x-api-key": "sk_xyz"}.get) == "sk_xyz"
    assert extract_api_key({"authorization": "Basic dXNlcg=="}.get) is None
    assert extract_api_key({}.get) is None


@pytest.fixture(params=["memory", "sqlite", "redis"])
def key_store(request, tmp_path):
    if request.param == "memory":
        store = MemoryKeyStore()
    elif request.param == "sqlite":
        store = SQLiteKeyStore(str(tmp_path / "state.db"))
    else:
        store = RedisKeyStore(request.getfixturevalue("redis_url"))
    yield store
    store.close()


class TestKeyStoreContract:
    def test_create_stores_only_a_hash(self, key_store):
        raw, info = key_store.create("alice", "free")
        assert info.key_hash == hash_key(raw) and raw not in json.dumps(info.to_dict())
        assert [k.id for k in key_store.list()] == [info.id]

    def test_a_key_is_found_by_id_or_by_the_raw_key(self, key_store):
        raw, info = key_store.create("alice", "free")
        assert key_store.get(info.id) == key_store.get(raw) == info
        with pytest.raises(KeyError):
            key_store.get("key_nope")

    def test_revoke_and_set_plan_change_the_key_and_the_version(self, key_store):
        raw, info = key_store.create("alice", "free")
        v0 = key_store.version()
        assert key_store.set_plan(raw, "premium").plan == "premium"
        assert key_store.revoke(info.id).active is False
        assert key_store.version() >= v0 + 2
        assert key_store.get(info.id).plan == "premium"


def test_the_sqlite_store_never_holds_the_raw_key(tmp_path):
    store = SQLiteKeyStore(str(tmp_path / "state.db"))
    raw, _ = store.create("alice", "free")
    assert raw.encode() not in (tmp_path / "state.db").read_bytes()
    rows = sqlite3.connect(tmp_path / "state.db").execute("SELECT * FROM api_keys").fetchall()
    assert raw not in repr(rows)


def test_the_registry_knows_active_keys_only():
    store = MemoryKeyStore()
    raw, info = store.create("alice", "free")
    registry = KeyRegistry(store)
    registry.refresh()
    assert registry.lookup(raw) == info == registry.by_id(info.id)
    store.revoke(raw)
    registry.refresh()
    assert registry.lookup(raw) is None and registry.by_id(info.id) is None
    assert registry.lookup("sk_" + "x" * 500) is None


def test_a_key_created_through_the_registry_is_in_force_here_when_the_call_returns():
    registry = KeyRegistry(MemoryKeyStore(), interval=3600).start()  # no poll will come
    try:
        raw, info = registry.create("alice", "free")
        assert registry.lookup(raw) == info
        assert registry.set_plan(info.id, "premium").plan == registry.lookup(raw).plan
        registry.revoke(raw)
        assert registry.lookup(raw) is None
    finally:
        registry.stop()


class SlowListing(MemoryKeyStore):
    """Takes its snapshot, then waits: a poll that read the store just before a write."""

    def __init__(self) -> None:
        super().__init__()
        self.listing, self.go = threading.Event(), threading.Event()

    def list(self):
        keys = super().list()
        if not self.go.is_set():
            self.listing.set()
            self.go.wait(5)
        return keys


def test_a_poll_that_read_the_store_before_a_write_cannot_hide_the_written_key():
    store = SlowListing()
    store.create("old", "free")
    registry = KeyRegistry(store)
    poll = threading.Thread(target=registry.refresh)
    poll.start()
    assert store.listing.wait(5)
    created: list[str] = []
    writer = threading.Thread(target=lambda: created.append(registry.create("new", "free")[0]))
    writer.start()
    time.sleep(0.1)  # the writer's own refresh is done (or waiting for the poll's)
    store.go.set()
    poll.join(5)
    writer.join(5)
    assert registry.lookup(created[0]) is not None


def test_identity_is_the_key_on_its_plan_or_the_client_on_none():
    store = MemoryKeyStore()
    raw, info = store.create("alice", "premium")
    registry = KeyRegistry(store)
    registry.refresh()
    ident = Identifier(RateLimitSettings(), registry)
    assert ident.identify({"x-api-key": raw}.get, "10.0.0.9") == (f"key:{info.id}", "premium")
    assert ident.identify({}.get, "10.0.0.9") == ("ip:10.0.0.9", None)
    for bad in ("sk_" + "a" * 43, "garbage", "sk_" + "a" * 300):
        with pytest.raises(Unauthorized):
            ident.identify({"authorization": f"Bearer {bad}"}.get, "10.0.0.9")


def test_identity_by_header_falls_back_to_the_client_address():
    ident = Identifier(RateLimitSettings(key="header:X-Tenant"))
    assert ident.identify({"x-tenant": "acme"}.get, "10.0.0.9") == ("header:acme", None)
    assert ident.identify({}.get, "10.0.0.9") == ("ip:10.0.0.9", None)


def test_forwarded_for_is_believed_only_from_trusted_proxies():
    trusted = TrustedProxies(["10.0.0.0/8"])
    xff = "6.6.6.6, 203.0.113.7, 10.0.0.2"
    assert client_address("10.0.0.1", xff, trusted) == "203.0.113.7"
    assert client_address("198.51.100.1", xff, trusted) == "198.51.100.1"
    assert client_address("10.0.0.1", xff, TrustedProxies()) == "10.0.0.1"


# -- the CLI, as a user runs it -----------------------------------------------------------

def surge(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "surge.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=30)


CONFIG = """
state: {state}
rate_limits:
  plans:
    free: [10/second, 1000/hour]
    premium: [100/second]
  default_plan: free
"""


@pytest.fixture(params=["local", "redis"])
def project(request, tmp_path) -> Path:
    state = "local" if request.param == "local" else request.getfixturevalue("redis_url")
    (tmp_path / "surge.yaml").write_text(CONFIG.format(state=state))
    return tmp_path


@pytest.fixture
def local_project(tmp_path) -> Path:
    """The CLI code is the same over every store (their contract is above): run it once."""
    (tmp_path / "surge.yaml").write_text(CONFIG.format(state="local"))
    return tmp_path


@pytest.mark.integration
def test_keys_cli_creates_lists_replans_and_revokes(local_project):
    project = local_project
    created = surge("keys", "create", "--name", "alice", "--plan", "free", cwd=project)
    assert created.returncode == 0, created.stderr
    raw = created.stdout.strip()
    assert well_formed(raw) and "shown only this once" in created.stderr

    listed = surge("keys", "list", "--json", cwd=project)
    [doc] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (doc["name"], doc["plan"], doc["revoked_at"]) == ("alice", "free", None)
    assert raw not in listed.stdout and "key_hash" not in doc

    assert surge("keys", "set-plan", doc["id"], "premium", cwd=project).returncode == 0
    assert surge("keys", "revoke", raw, cwd=project).returncode == 0
    table = surge("keys", "list", cwd=project).stdout
    assert "premium" in table and "revoked" in table


@pytest.mark.integration
def test_keys_cli_reports_bad_input_without_a_traceback(local_project, tmp_path):
    project = local_project
    bad_plan = surge("keys", "create", "--name", "a", "--plan", "fre", cwd=project)
    assert bad_plan.returncode == 2 and "did you mean 'free'" in bad_plan.stderr
    unknown = surge("keys", "revoke", "key_0000", cwd=project)
    assert unknown.returncode == 1 and "no such key" in unknown.stderr
    elsewhere = tmp_path / "empty"
    elsewhere.mkdir()
    assert surge("keys", "list", cwd=elsewhere).returncode == 2
    found = surge("keys", "list", "--config", str(project / "surge.yaml"), cwd=elsewhere)
    assert found.returncode == 0
    assert "Traceback" not in bad_plan.stderr + unknown.stderr


@pytest.mark.integration
def test_a_running_registry_sees_changes_from_another_process_within_a_second(project):
    """The gateway's registry and the CLI each open the state store on their own; changes go
    through the shared file or Redis only."""
    from surge.config import load
    from surge.ratelimit.keys import open_key_store

    config = load(project / "surge.yaml", check_support=False)
    gateway_side = open_key_store(config.state, str(project / config.data_dir))
    cli_side = open_key_store(config.state, str(project / config.data_dir))
    registry = KeyRegistry(gateway_side, interval=0.2).start()
    try:
        raw, _ = cli_side.create("a", "free")
        assert wait_until(lambda: registry.lookup(raw) is not None) < 1.0
        cli_side.set_plan(raw, "premium")
        assert wait_until(lambda: registry.lookup(raw).plan == "premium") < 1.0
        cli_side.revoke(raw)
        assert wait_until(lambda: registry.lookup(raw) is None) < 1.0
    finally:
        registry.stop()
        gateway_side.close()
        cli_side.close()


def wait_until(condition, timeout: float = 3.0) -> float:
    """Seconds until `condition()` held (fails the test after `timeout`)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "condition never held"
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.mark.integration
def test_keys_cli_takes_a_name_where_it_takes_an_id(local_project):
    project = local_project
    assert surge("keys", "create", "--name", "bob", "--plan", "free", cwd=project).returncode == 0
    replanned = surge("keys", "set-plan", "bob", "premium", cwd=project)
    assert replanned.returncode == 0 and "is now on plan premium" in replanned.stdout
    revoked = surge("keys", "revoke", "bob", cwd=project)
    assert revoked.returncode == 0 and "(bob)" in revoked.stdout
    assert "revoked" in surge("keys", "list", cwd=project).stdout


@pytest.mark.integration
def test_keys_cli_asks_for_an_id_when_a_name_is_on_several_keys(local_project):
    project = local_project
    for _ in range(2):
        surge("keys", "create", "--name", "twin", "--plan", "free", cwd=project)
    done = surge("keys", "revoke", "twin", cwd=project)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "2 keys are named 'twin'" in done.stderr and "give one id" in done.stderr
