"""Durable API key stores: SQLite (a file under `data_dir`, for `state: local`) and Redis
(for `state: redis://...`, shared by every gateway). Both keep only key hashes and bump a
version counter in the same transaction as each change, which is what registries poll.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from surge.errors import StoreError
from surge.ratelimit.keys import KeyInfo, KeyStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    plan TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS api_keys_version (one INTEGER PRIMARY KEY CHECK (one = 1), n INTEGER);
INSERT OR IGNORE INTO api_keys_version VALUES (1, 0);
"""
_COLUMNS = "id, name, plan, key_hash, created_at, revoked_at"


class SQLiteKeyStore(KeyStore):
    """Keys in one SQLite file; a connection per call keeps it safe across threads."""

    def __init__(self, path: str) -> None:
        self.path = path
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """One connection, one transaction (committed on success), closed afterwards."""
        try:
            db = sqlite3.connect(self.path, timeout=5)
            try:
                with db:
                    yield db
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise StoreError(f"key store {self.path}: {exc}") from exc

    def list(self) -> list[KeyInfo]:
        with self._connect() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at").fetchall()
        return [KeyInfo(*row) for row in rows]

    def version(self) -> int:
        with self._connect() as db:
            return db.execute("SELECT n FROM api_keys_version").fetchone()[0]

    def _find(self, kid: str) -> KeyInfo | None:
        with self._connect() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE id = ?", (kid,)).fetchone()
        return KeyInfo(*row) if row else None

    def _save(self, info: KeyInfo) -> None:
        with self._connect() as db:  # one transaction: the row and the version together
            db.execute(
                f"INSERT OR REPLACE INTO api_keys ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                (info.id, info.name, info.plan, info.key_hash, info.created_at, info.revoked_at),
            )
            db.execute("UPDATE api_keys_version SET n = n + 1")


class RedisKeyStore(KeyStore):
    """Keys in one Redis hash (id -> JSON) plus a version counter, both under the same hash
    tag so a MULTI covers them on Redis Cluster too."""

    KEYS = "surge:keys:{registry}"
    VERSION = "surge:keys:{registry}:version"

    def __init__(self, url: str, timeout: float = 2.0) -> None:
        self.url = url
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )

    def list(self) -> list[KeyInfo]:
        try:
            raw = self.client.hvals(self.KEYS)
        except (redis.RedisError, OSError) as exc:
            raise StoreError(f"key store {self.url}: {exc}") from exc
        return sorted((KeyInfo.from_dict(json.loads(v)) for v in raw), key=lambda k: k.created_at)

    def version(self) -> int:
        try:
            return int(self.client.get(self.VERSION) or 0)
        except (redis.RedisError, OSError) as exc:
            raise StoreError(f"key store {self.url}: {exc}") from exc

    def _find(self, kid: str) -> KeyInfo | None:
        try:
            raw = self.client.hget(self.KEYS, kid)
        except (redis.RedisError, OSError) as exc:
            raise StoreError(f"key store {self.url}: {exc}") from exc
        return KeyInfo.from_dict(json.loads(raw)) if raw else None

    def _save(self, info: KeyInfo) -> None:
        try:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(self.KEYS, info.id, json.dumps(info.to_dict()))
                pipe.incr(self.VERSION)
                pipe.execute()
        except (redis.RedisError, OSError) as exc:
            raise StoreError(f"key store {self.url}: {exc}") from exc

    def close(self) -> None:
        self.client.close()
