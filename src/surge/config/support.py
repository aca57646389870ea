"""Which valid surge.yaml keys the runtime cannot honour yet: the one list to edit when a
feature lands. A key in use here is refused with a located problem, never silently ignored.

This is a pass of its own, separate from validation, so that libraries (rate limiting, jobs)
can parse a full config whose keys `surge up` does not run yet."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from surge.config.problems import location


def _set(value: Any) -> bool:
    return value is not None and value is not False


@dataclass(frozen=True)
class Unsupported:
    """Keys at `path` (`*` any mapping key, `[*]` any list item) are refused when `in_use`."""

    path: str
    reason: str
    advice: str
    in_use: Callable[[Any], bool] = _set


NOT_YET_SUPPORTED: tuple[Unsupported, ...] = (
)


def check_supported(config: Any) -> list[str]:
    """One `location: not supported yet (...)` problem per key in use from NOT_YET_SUPPORTED.
    `config` is a `Config` or the raw mapping parsed from YAML (absent keys are not in use)."""
    problems = []
    for entry in NOT_YET_SUPPORTED:
        for parts, value in _resolve(config, _segments(entry.path)):
            if entry.in_use(value):
                problems.append(
                    f"{location(parts)}: not supported yet ({entry.reason}); {entry.advice}"
                )
    return problems


def _segments(path: str) -> list[str]:
    return path.replace("[*]", ".[*]").split(".")


def _resolve(node: Any, segments: list[str], parts: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """Every (location parts, value) that `segments` reaches from `node`."""
    if not segments:
        yield parts, node
        return
    head, rest = segments[0], segments[1:]
    children: Iterable[tuple[str | int, Any]]
    if head == "*":
        children = node.items() if isinstance(node, Mapping) else ()
    elif head == "[*]":
        children = enumerate(node) if isinstance(node, list) else ()
    elif isinstance(node, Mapping):
        children = [(head, node[head])] if head in node else []
    else:
        children = [(head, getattr(node, head))] if hasattr(node, head) else []
    for key, child in children:
        yield from _resolve(child, rest, (*parts, key))
