"""API keys: their format (`sk_` + 32 random bytes, url-safe base64), the hash that is all
a store ever keeps, reading a key from request headers, and the `KeyStore` interface with its
in-memory implementation. SQLite and Redis key stores live in `key_stores`; the in-memory
lookup a running gateway uses lives in `registry`.

A raw key is shown once, at creation, and never stored or logged.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

PREFIX = "sk_"
MAX_KEY_LENGTH = 128
_KEY_FORMAT = re.compile(r"sk_[A-Za-z0-9_-]{16,125}")


@dataclass(frozen=True)
class KeyInfo:
    """What is known about a key. `id` is public (safe to print and to use in URLs)."""

    id: str
    name: str
    plan: str
    key_hash: str
    created_at: float
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KeyInfo:
        values: dict[str, Any] = {k: data.get(k) for k in cls.__dataclass_fields__}
        return cls(**values)


def generate_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def well_formed(raw: str) -> bool:
    """Cheap shape check, done before any hashing or store access."""
    return len(raw) <= MAX_KEY_LENGTH and _KEY_FORMAT.fullmatch(raw) is not None


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def key_id(key_hash: str) -> str:
    return "key_" + key_hash[:16]


def extract_api_key(get: Callable[[str], str | None]) -> str | None:
    """The API key a request carries, from `Authorization: Bearer ...` or `X-API-Key`;
    None when it carries neither. `get` looks a header up by lower-case name."""
    auth = get("authorization")
    if auth:
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() == "bearer":
            return token.strip()
    key = get("x-api-key")
    return key.strip() if key is not None else None


class KeyStore(ABC):
    """Durable API keys. Every change bumps `version()`, which registries poll."""

    def create(self, name: str, plan: str) -> tuple[str, KeyInfo]:
        """A new key: returns the raw key (show it once) and what is stored about it."""
        raw = generate_key()
        digest = hash_key(raw)
        info = KeyInfo(key_id(digest), name, plan, digest, time.time())
        self._save(info)
        return raw, info

    def get(self, ref: str) -> KeyInfo:
        """A key by its id or by the raw key itself; KeyError when unknown."""
        kid = key_id(hash_key(ref)) if ref.startswith(PREFIX) else ref
        info = self._find(kid)
        if info is None:
            raise KeyError(ref if not ref.startswith(PREFIX) else "that key")
        return info

    def revoke(self, ref: str) -> KeyInfo:
        info = self.get(ref)
        if info.active:
            info = replace(info, revoked_at=time.time())
            self._save(info)
        return info

    def set_plan(self, ref: str, plan: str) -> KeyInfo:
        info = replace(self.get(ref), plan=plan)
        self._save(info)
        return info

    @abstractmethod
    def list(self) -> list[KeyInfo]:
        """Every key, revoked ones included, oldest first."""

    @abstractmethod
    def version(self) -> int:
        """A counter that changes whenever any key does."""

    @abstractmethod
    def _find(self, kid: str) -> KeyInfo | None: ...

    @abstractmethod
    def _save(self, info: KeyInfo) -> None:
        """Insert or replace one key and bump the version, atomically."""

    def close(self) -> None:  # noqa: B027 -- most stores hold nothing to release
        """Release connections."""


class MemoryKeyStore(KeyStore):
    """Keys in this process only (tests, single-process apps)."""

    def __init__(self) -> None:
        self._keys: dict[str, KeyInfo] = {}
        self._version = 0

    def list(self) -> list[KeyInfo]:
        return sorted(self._keys.values(), key=lambda k: k.created_at)

    def version(self) -> int:
        return self._version

    def _find(self, kid: str) -> KeyInfo | None:
        return self._keys.get(kid)

    def _save(self, info: KeyInfo) -> None:
        self._keys[info.id] = info
        self._version += 1


def open_key_store(state: str = "local", data_dir: str = ".surge") -> KeyStore:
    """The key store for surge.yaml's `state`: SQLite under `data_dir` for `local`, Redis
    hashes for `redis://...`, this process only for `memory://`."""
    if state == "memory://":
        return MemoryKeyStore()
    from surge.ratelimit.key_stores import RedisKeyStore, SQLiteKeyStore

    if state == "local":
        return SQLiteKeyStore(f"{data_dir}/state.db")
    if state.startswith("sqlite:///"):
        return SQLiteKeyStore(state.removeprefix("sqlite:///"))
    if state.startswith(("redis://", "rediss://")):
        return RedisKeyStore(state)
    raise ValueError(f"unknown state store {state!r} (expected local or redis://...)")
