"""SQLite broker: the embedded default. One file in WAL mode, shared safely by several worker
processes on one machine: every claim is a `BEGIN IMMEDIATE` transaction, so two workers never
take the same job, and a lease (`lease_until`) hands a vanished worker's job to another.

The sqlite3 calls run on one private thread per broker so the event loop never blocks on disk.
Claims and settlements are batched into one transaction each, which is what makes a durable
(fsync'd) queue fast.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

from surge.errors import BrokerError
from surge.jobs.broker import DEPTH_STATES, Broker
from surge.jobs.record import JobRecord
from surge.jobs.states import JobState

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS surge_jobs (
    id TEXT PRIMARY KEY,
    queue TEXT NOT NULL,
    state TEXT NOT NULL,
    key TEXT,
    run_at REAL NOT NULL,
    lease_until REAL,
    worker TEXT,
    finished_at REAL,
    expires_at REAL,
    record TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS surge_jobs_active_key ON surge_jobs(key)
    WHERE key IS NOT NULL AND state IN ('queued', 'scheduled', 'running', 'retrying', 'unknown');
CREATE INDEX IF NOT EXISTS surge_jobs_due ON surge_jobs(queue, state, run_at);
CREATE INDEX IF NOT EXISTS surge_jobs_lease ON surge_jobs(state, lease_until);
CREATE INDEX IF NOT EXISTS surge_jobs_expiry ON surge_jobs(expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS surge_cron_ticks (
    name TEXT NOT NULL, tick REAL NOT NULL, PRIMARY KEY (name, tick)
);
"""

_WAITING_SQL = "('scheduled', 'retrying', 'unknown')"
_EXPIRY_SWEEP_EVERY = 60.0


def _use_wal(db: sqlite3.Connection, patience: float) -> None:
    """Put the database in WAL mode (a no-op once it is: the mode lives in the file). SQLite
    answers "database is locked" at once, without its busy timeout, when connections opening a
    new file race to switch it, so that case is retried here for up to `patience` seconds."""
    deadline = time.monotonic() + patience
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)

class SQLiteBroker(Broker):
    poll_interval = 0.02   # an idle poll is one read-only query

    def __init__(self, url: str, busy_timeout: float = 5.0) -> None:
        self.url = url
        rest = url.split("://", 1)[1]
        path, _, query = rest.partition("?")
        self.path = Path(path[1:] if path.startswith("/") else path)
        options = {k: v[-1] for k, v in parse_qs(query).items()}
        self.synchronous = options.get("synchronous", "normal").upper()
        self.busy_timeout = busy_timeout
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="surge-sqlite")
        self._db: sqlite3.Connection | None = None
        self._next_sweep = 0.0

    # -- plumbing ----------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._guarded, fn, args)

    def _guarded(self, fn: Callable[..., T], args: tuple) -> T:
        try:
            return fn(self._connection(), *args)
        except (sqlite3.Error, OSError) as exc:
            if self._db is not None and self._db.in_transaction:
                self._db.rollback()
            raise BrokerError(f"SQLite broker at {self.path}: {exc}") from exc

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None,
                check_same_thread=False,
            )
            _use_wal(db, self.busy_timeout)
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            db.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
            self._db = db
        return self._db

    async def close(self) -> None:
        def shut(db: sqlite3.Connection) -> None:
            db.close()
            self._db = None

        if self._db is not None:
            await self._call(shut)
        self._executor.shutdown(wait=False)

    # -- enqueue -----------------------------------------------------------------------------

    async def enqueue(self, record: JobRecord) -> JobRecord:
        return await self._call(_enqueue, record)

    async def claim(
        self, queues: Sequence[str], worker: str, limit: int, lease: float, now: float,
        wait: float = 0.0,
    ) -> list[JobRecord]:
        sweep = now >= self._next_sweep
        if sweep:
            self._next_sweep = now + _EXPIRY_SWEEP_EVERY
        claimed = await self._call(_claim, list(queues), worker, limit, lease, now, sweep)
        if not claimed and wait > 0:
            await asyncio.sleep(wait)
        return claimed

    async def extend(
        self, records: Sequence[JobRecord], worker: str, lease: float, now: float
    ) -> None:
        rows = [(now + lease, r.id, worker) for r in records]
        await self._call(_write_many, "UPDATE surge_jobs SET lease_until = ? "
                         "WHERE id = ? AND worker = ? AND state = 'running'", rows)

    async def settle(self, records: Sequence[JobRecord], now: float, ttl: float) -> None:
        rows = [
            (str(r.state), r.run_at, r.finished_at,
             None if r.state in (JobState.DEAD, *_ACTIVE_STATES) else now + ttl,
             r.to_json(), r.id)
            for r in records
        ]
        await self._call(_write_many, "UPDATE surge_jobs SET state = ?, run_at = ?, "
                         "lease_until = NULL, finished_at = ?, expires_at = ?, record = ? "
                         "WHERE id = ?", rows)

    # -- reading -----------------------------------------------------------------------------

    async def get(self, job_id: str) -> JobRecord | None:
        rows = await self._call(_select, "SELECT record FROM surge_jobs WHERE id = ?", (job_id,))
        return JobRecord.from_json(rows[0][0]) if rows else None

    async def depth(self, queue: str) -> dict[str, int]:
        rows = await self._call(
            _select, "SELECT state, COUNT(*) FROM surge_jobs WHERE queue = ? GROUP BY state",
            (queue,),
        )
        counts = {str(state): 0 for state in DEPTH_STATES}
        counts.update({state: n for state, n in rows if state in counts})
        return counts

    async def oldest_age(self, queue: str, now: float) -> float | None:
        rows = await self._call(
            _select, "SELECT MIN(run_at) FROM surge_jobs WHERE queue = ? AND state = 'queued'",
            (queue,),
        )
        oldest = rows[0][0]
        return None if oldest is None else max(0.0, now - oldest)

    async def queues(self) -> list[str]:
        rows = await self._call(_select, "SELECT DISTINCT queue FROM surge_jobs ORDER BY 1", ())
        return [row[0] for row in rows]

    async def dead(self, queue: str | None = None, limit: int = 100) -> list[JobRecord]:
        rows = await self._call(
            _select, "SELECT record FROM surge_jobs WHERE state = 'dead' "
            "AND (?1 IS NULL OR queue = ?1) ORDER BY finished_at LIMIT ?2", (queue, limit),
        )
        return [JobRecord.from_json(row[0]) for row in rows]

    # -- operator actions --------------------------------------------------------------------

    async def cancel(self, job_id: str, now: float) -> bool:
        changed = await self._call(
            _update_records, "state IN ('queued', " + _WAITING_SQL[1:] + " AND id = :id",
            {"id": job_id}, "cancelled", now,
        )
        return changed > 0

    async def retry_dead(self, job_id: str | None, now: float) -> int:
        return await self._call(
            _update_records, "state = 'dead' AND (:id IS NULL OR id = :id)", {"id": job_id},
            "queued", now,
        )

    async def purge(self, queue: str | None = None) -> int:
        return await self._call(
            _write_many,
            "DELETE FROM surge_jobs WHERE state = 'dead' AND (?1 IS NULL OR queue = ?1)",
            [(queue,)],
        )

    async def claim_tick(self, name: str, tick: float) -> bool:
        changed = await self._call(
            _write_many, "INSERT OR IGNORE INTO surge_cron_ticks (name, tick) VALUES (?, ?)",
            [(name, tick)],
        )
        return changed == 1


_ACTIVE_STATES = (JobState.QUEUED, JobState.SCHEDULED, JobState.RUNNING, JobState.RETRYING,
                  JobState.UNKNOWN)


# -- statements, run on the broker's thread ---------------------------------------------------


def _enqueue(db: sqlite3.Connection, record: JobRecord) -> JobRecord:
    db.execute("BEGIN IMMEDIATE")
    cursor = db.execute(
        "INSERT OR IGNORE INTO surge_jobs (id, queue, state, key, run_at, record) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (record.id, record.queue, str(record.state), record.key, record.run_at, record.to_json()),
    )
    existing = None
    if cursor.rowcount == 0:
        existing = db.execute(
            "SELECT record FROM surge_jobs WHERE key = ? AND state IN "
            "('queued', 'scheduled', 'running', 'retrying', 'unknown')", (record.key,),
        ).fetchone()
    db.execute("COMMIT")
    if existing is None and cursor.rowcount == 0:
        raise BrokerError(f"job id {record.id} already exists")
    return JobRecord.from_json(existing[0]) if existing else record


def _claim(
    db: sqlite3.Connection, queues: list[str], worker: str, limit: int, lease: float,
    now: float, sweep: bool,
) -> list[JobRecord]:
    marks = ",".join("?" * len(queues))
    if not sweep and not _anything_due(db, queues, marks, now):
        return []   # an idle poll takes no write lock
    db.execute("BEGIN IMMEDIATE")
    if sweep:
        db.execute("DELETE FROM surge_jobs WHERE expires_at < ?", (now,))
    claimed: list[JobRecord] = []
    # a vanished worker's jobs first: they have waited longest
    expired = db.execute(
        f"SELECT id FROM surge_jobs WHERE state = 'running' AND lease_until < ? "
        f"AND queue IN ({marks}) LIMIT ?", (now, *queues, limit),
    ).fetchall()
    claimed += _take(db, [row[0] for row in expired], worker, lease, now)
    for queue in queues:
        if len(claimed) >= limit:
            break
        db.execute(
            f"UPDATE surge_jobs SET state = 'queued', record = json_set(record, '$.state', "
            f"'queued') WHERE queue = ? AND state IN {_WAITING_SQL} AND run_at <= ?",
            (queue, now),
        )
        due = db.execute(
            "SELECT id FROM surge_jobs WHERE queue = ? AND state = 'queued' "
            "ORDER BY run_at LIMIT ?", (queue, limit - len(claimed)),
        ).fetchall()
        claimed += _take(db, [row[0] for row in due], worker, lease, now)
    db.execute("COMMIT")
    return claimed


def _anything_due(db: sqlite3.Connection, queues: list[str], marks: str, now: float) -> bool:
    return db.execute(
        f"SELECT 1 FROM surge_jobs WHERE queue IN ({marks}) AND state = 'queued' UNION ALL "
        f"SELECT 1 FROM surge_jobs WHERE queue IN ({marks}) AND state IN {_WAITING_SQL} "
        f"AND run_at <= ? UNION ALL SELECT 1 FROM surge_jobs WHERE state = 'running' "
        f"AND lease_until < ? AND queue IN ({marks}) LIMIT 1",
        (*queues, *queues, now, now, *queues),
    ).fetchone() is not None


def _take(
    db: sqlite3.Connection, ids: list[str], worker: str, lease: float, now: float
) -> list[JobRecord]:
    if not ids:
        return []
    rows = db.execute(
        f"UPDATE surge_jobs SET state = 'running', lease_until = ?, worker = ?, "
        f"record = json_set(record, '$.state', 'running', "
        f"'$.attempts', json_extract(record, '$.attempts') + 1, "
        f"'$.worker', ?, '$.started_at', ?) "
        f"WHERE id IN ({','.join('?' * len(ids))}) RETURNING record",
        (now + lease, worker, worker, now, *ids),
    ).fetchall()
    return [JobRecord.from_json(row[0]) for row in rows]


def _write_many(db: sqlite3.Connection, sql: str, rows: list[tuple]) -> int:
    db.execute("BEGIN IMMEDIATE")
    changed = 0
    for row in rows:
        changed += db.execute(sql, row).rowcount
    db.execute("COMMIT")
    return changed


def _update_records(
    db: sqlite3.Connection, where: str, params: dict, state: str, now: float
) -> int:
    """Operator moves: to 'queued' (retry a dead job: fresh attempts, key dropped) or to
    'cancelled'. `where` uses named parameters from `params`."""
    reset = ", '$.attempts', 0, '$.key', NULL" if state == "queued" else ""
    finished = "NULL" if state == "queued" else ":now"
    db.execute("BEGIN IMMEDIATE")
    changed = db.execute(
        f"UPDATE surge_jobs SET state = :state, run_at = :now, key = NULL, "
        f"finished_at = {finished}, record = json_set(record, '$.state', :state, "
        f"'$.run_at', :now, '$.finished_at', {finished}{reset}) WHERE {where}",
        {**params, "state": state, "now": now},
    ).rowcount
    db.execute("COMMIT")
    return changed


def _select(db: sqlite3.Connection, sql: str, params: tuple) -> list[tuple]:
    return db.execute(sql, params).fetchall()
