"""`KeyRegistry`: the in-memory view of API keys that a running gateway or app consults on
every request (`lookup`, synchronous, no I/O), kept fresh by a background thread that polls
the key store's version counter. A key created, revoked or re-planned through the registry
(`create`, `revoke`, `set_plan`: the gateway's admin API, or your app) is in force in this
process when the call returns; a change made by another process (`surge keys`, another
gateway or app) is in force here within `interval` plus one read of the store, while the
store answers. Nothing on the request path ever waits for the store.
"""

from __future__ import annotations

import logging
import threading

from surge.ratelimit.keys import KeyInfo, KeyStore, hash_key, well_formed

log = logging.getLogger("surge.ratelimit")


# How often a registry polls its store: the bound on how late another process's change
# arrives here (docs/ratelimit.md states it)
REFRESH_INTERVAL = 0.5


class KeyRegistry:
    def __init__(self, store: KeyStore, *, interval: float = REFRESH_INTERVAL) -> None:
        self.store = store
        self.interval = interval
        self.refresh_errors = 0  # polls that failed; the last good view stays in force
        self._by_hash: dict[str, KeyInfo] = {}
        self._by_id: dict[str, KeyInfo] = {}
        self._version: int | None = None
        # one refresh at a time: a poll that read the store before a write must not
        # replace the view the writer's own refresh built after it
        self._refreshing = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def lookup(self, raw_key: str) -> KeyInfo | None:
        """The active key for a raw key; None for garbage, unknown or revoked keys. Garbage
        (over-long, wrong prefix, bad characters) is turned away before any hashing."""
        if not well_formed(raw_key):
            return None
        return self._by_hash.get(hash_key(raw_key))

    def by_id(self, kid: str) -> KeyInfo | None:
        """The active key with this public id (for `GET /api/ratelimits/{key}`)."""
        return self._by_id.get(kid)

    def refresh(self) -> bool:
        """Reload when the store's version moved; True when the view changed."""
        with self._refreshing:
            version = self.store.version()
            if version == self._version:
                return False
            keys = self.store.list()
            # whole dicts are swapped in: readers never see a half-built one
            self._by_hash = {k.key_hash: k for k in keys if k.active}
            self._by_id = {k.id: k for k in keys if k.active}
            self._version = version
            return True

    def create(self, name: str, plan: str) -> tuple[str, KeyInfo]:
        """A new key, usable in this process as soon as this returns (blocking I/O: call it
        off the event loop). Returns the raw key (show it once) and its stored record."""
        raw, info = self.store.create(name, plan)
        self.refresh()
        return raw, info

    def revoke(self, ref: str) -> KeyInfo:
        """Revoke a key (by id or raw key): 401 in this process as soon as this returns."""
        info = self.store.revoke(ref)
        self.refresh()
        return info

    def set_plan(self, ref: str, plan: str) -> KeyInfo:
        """Move a key to another plan, in force in this process as soon as this returns."""
        info = self.store.set_plan(ref, plan)
        self.refresh()
        return info

    def start(self) -> KeyRegistry:
        """Load now, then keep refreshing in a daemon thread until `stop()`. A store that is
        down at start is reported and retried by the thread: the gateway still starts, and
        keys work as soon as the store answers (until then every key is unknown: 401)."""
        self._poll()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="surge-key-registry", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._poll()

    def _poll(self) -> None:
        try:
            self.refresh()
        except Exception as exc:  # a store blip must not kill the refresher
            self.refresh_errors += 1
            if self.refresh_errors == 1 or self.refresh_errors % 100 == 0:
                log.warning("key registry refresh failed (%d so far): %s",
                            self.refresh_errors, exc)
