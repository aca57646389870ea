"""`JobRecord`: everything a broker keeps about one job, and its flat string form (Redis hashes,
SQLite rows, the admin API). Arguments and results travel as JSON; `encode_arguments` is where
an unserialisable argument is refused, at enqueue time. Pure: no I/O."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, fields

from surge.errors import JobError
from surge.jobs.states import JobState


@dataclass(slots=True)
class JobRecord:
    name: str
    queue: str = "default"
    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: JobState = JobState.QUEUED
    key: str | None = None           # idempotency key, held while the job is ACTIVE
    retries: int = 5
    backoff: float = 1.0
    max_backoff: float = 600.0
    timeout: float = 300.0
    attempts: int = 0                # runs started, counted at claim
    created_at: float = 0.0
    run_at: float = 0.0              # when it may run (due time of a scheduled job)
    started_at: float | None = None
    finished_at: float | None = None
    worker: str | None = None
    result: object = None
    error: str | None = None
    traceback: str | None = None
    delivery: str | None = None      # broker's handle for this delivery (a stream entry id)

    def to_fields(self, names: tuple[str, ...] | None = None) -> dict[str, str]:
        """Flat string form of the fields `names` (default: all); `None` values are left
        out, except a result."""
        out: dict[str, str] = {}
        for name in names or _ALL_NAMES:
            value = getattr(self, name)
            if value is None and name != "result":
                continue
            out[name] = json.dumps(value) if name in _JSON_FIELDS else str(value)
        return out

    @classmethod
    def from_fields(cls, data: dict, base: dict | None = None) -> JobRecord:
        """Inverse of `to_fields`, over `base` (already typed values); accepts bytes or str
        keys and values."""
        kwargs: dict[str, object] = dict(base or {})
        for key, raw in data.items():
            name = _text(key)
            if name in _FIELD_NAMES:
                kwargs[name] = _CONVERT.get(name, _identity)(_text(raw))
        if "state" in kwargs:
            kwargs["state"] = JobState(str(kwargs["state"]))
        return cls(**kwargs)  # type: ignore[arg-type]

    def public(self) -> dict[str, object]:
        """The JSON shape shown by `surge jobs`, the admin API and stored by SQLite."""
        out = {name: getattr(self, name) for name in _NAMES}
        out["state"] = str(self.state)
        return out

    def to_json(self) -> str:
        return json.dumps(self.public())

    @classmethod
    def from_json(cls, text: str | bytes) -> JobRecord:
        data = json.loads(text)
        data["state"] = JobState(data["state"])
        return cls(**data)


_ALL_NAMES = tuple(f.name for f in fields(JobRecord))
_FIELD_NAMES = frozenset(_ALL_NAMES)
_NAMES = tuple(name for name in _ALL_NAMES if name != "delivery")
_JSON_FIELDS = frozenset({"args", "kwargs", "result"})
_INTS = ("retries", "attempts")
_FLOATS = ("backoff", "max_backoff", "timeout", "created_at", "run_at", "started_at", "finished_at")


def _identity(value: str) -> str:
    return value


_CONVERT: dict[str, Callable[[str], object]] = {
    **{name: int for name in _INTS},
    **{name: float for name in _FLOATS},
    **{name: json.loads for name in _JSON_FIELDS},
}


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def encode_arguments(name: str, args: tuple, kwargs: dict) -> tuple[list, dict]:
    """The arguments as they will be stored, or `JobError` naming the one JSON cannot carry."""
    try:
        json.dumps([args, kwargs])
    except (TypeError, ValueError) as exc:
        for position, value in [*enumerate(args), *kwargs.items()]:
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                raise JobError(
                    f"job {name!r}: argument {position!r} ({type(value).__name__}) "
                    f"is not JSON-serialisable; pass plain data (str, int, float, bool, None, "
                    f"list, dict) and look objects up inside the job"
                ) from exc
        raise JobError(f"job {name!r}: arguments are not JSON-serialisable: {exc}") from exc
    return list(args), dict(kwargs)


def encode_result(value: object) -> object:
    """A job's return value if JSON can carry it, else its `repr` (the job still succeeded)."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value
