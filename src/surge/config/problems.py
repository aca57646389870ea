"""Problems with a config as the user reads them: `location: message`, where the location
names keys as written in surge.yaml (`services.api.health.interval`, `routes[1].service`).

Turns pydantic's validation errors into such lines: drops the union tags pydantic puts into
error locations, states plain messages, and suggests the nearest key for an unknown one."""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError


def location(parts: Sequence[str | int]) -> str:
    """`("routes", 1, "service")` -> `routes[1].service`; the root is `(root)`."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(root)"


def located(source: str | Path, problem: str) -> str:
    """`problem` as printed: prefixed with the file it is in, once (a YAML syntax error and
    an unreadable file name it already)."""
    return problem if problem.startswith(f"{source}:") else f"{source}: {problem}"


def misspelt_keys_first(problems: list[str]) -> list[str]:
    """`problems` with unknown top-level keys first: `servces:` explains the 'unknown
    service' problems that follow it, so it is what the user must read first."""
    return sorted(problems, key=lambda p: not re.match(r"[^.\[:\s]+: unknown key", p))


def from_validation_error(error: ValidationError, data: Any, root: type[BaseModel]) -> list[str]:
    """One `location: message` line per error in `error`, raised validating `data` as `root`."""
    problems = []
    for item in error.errors(include_url=False):
        parts = _written_location(item["loc"], data)
        problems.append(f"{location(parts)}: {_message(item, parts, root)}")
    return problems


def _written_location(loc: Sequence[str | int], data: Any) -> list[str | int]:
    """The keys of `loc` that exist in the data, plus the last one (a missing key). What is
    left out are the tags pydantic adds for a union member and `[key]` for a mapping key."""
    parts: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif i < len(loc) - 1 or part == "[key]":
            continue
        parts.append(part)
    return parts


# pydantic's words for bounds and scalar types, said the way the rest of Surge says them.
_BOUNDS = {"greater_than_equal": ("ge", "at least"), "greater_than": ("gt", "more than"),
           "less_than_equal": ("le", "at most"), "less_than": ("lt", "less than")}
_TYPES = {"int_parsing": "a whole number", "int_type": "a whole number",
          "int_from_float": "a whole number", "float_parsing": "a number",
          "float_type": "a number", "bool_parsing": "true or false",
          "bool_type": "true or false", "string_type": "text"}

# Error types about the shape of a value: what was expected, and how to write it empty.
_SHAPES = {
    "model_type": ("a mapping of keys", "{}"), "model_attributes_type": ("a mapping of keys", "{}"),
    "dict_type": ("a mapping", "{}"), "list_type": ("a list", "[]"),
}


def _message(item: Any, parts: list[str | int], root: type[BaseModel]) -> str:
    kind = item["type"]
    if kind == "value_error":
        return str(item["ctx"]["error"])
    if kind == "missing":
        return "required key is missing"
    if kind in _SHAPES:
        shape = _SHAPES[kind]
        if item["input"] is None:  # `services:` with nothing under it is null in YAML
            return f"is empty; write {shape[1]} for none, or remove the key"
        return f"expected {shape[0]}, got {type(item['input']).__name__}"
    if kind in _BOUNDS:
        bound, words = _BOUNDS[kind]
        return f"must be {words} {_number(item['ctx'][bound])}, got {_number(item['input'])}"
    if kind == "too_short":
        least = item["ctx"]["min_length"]
        return f"needs at least {least} item{'s' * (least != 1)}, got {len(item['input'])}"
    if kind in _TYPES:
        return f"expected {_TYPES[kind]}, got {item['input']!r}"
    if kind == "literal_error":
        return _unknown_value(item["input"], re.findall(r"'([^']*)'", item["ctx"]["expected"]))
    if kind == "extra_forbidden":
        known = _keys_of(root, parts[:-1])
        close = _nearest(str(parts[-1]), known)
        hint = f"did you mean {close!r}?" if close else f"known keys: {', '.join(known)}"
        return f"unknown key ({hint})" if known else "unknown key"
    return str(item["msg"])


def _number(value: Any) -> str:
    """`0.0` (a duration in seconds, a size) as `0`; anything else as written."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, str) else str(value)


def _unknown_value(value: Any, allowed: list[str]) -> str:
    close = _nearest(str(value), allowed) if isinstance(value, str) else None
    hint = f"did you mean {close!r}?" if close else f"one of: {', '.join(allowed)}"
    return f"unknown value {value!r} ({hint})"


def _nearest(key: str, known: list[str]) -> str | None:
    """The known key a typo most likely meant: a shortened or extended form, else a close one."""
    if len(key) >= 3:
        for candidate in known:
            if candidate.startswith(key) or key.startswith(candidate):
                return candidate
    close = difflib.get_close_matches(key, known, n=1)
    return close[0] if close else None


def _keys_of(root: type[BaseModel], parts: Sequence[str | int]) -> list[str]:
    """The keys the model at `parts` accepts (empty when that is not a model)."""
    annotation: Any = root
    for part in parts:
        model = model_in(annotation)
        if model is not None:
            field = model.model_fields.get(str(part))
            annotation = field.annotation if field else None
        else:
            annotation = _item_type(annotation)
    model = model_in(annotation)
    return list(model.model_fields) if model else []


def model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds, through `Annotated`, `X | None` and unions."""
    for candidate in members(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _item_type(annotation: Any) -> Any:
    """What a list holds, or the values of a dict, for the first container in `annotation`."""
    for candidate in members(annotation):
        origin, args = typing.get_origin(candidate), typing.get_args(candidate)
        if origin is list and args:
            return args[0]
        if origin is dict and len(args) == 2:
            return args[1]
    return None


def members(annotation: Any) -> list[Any]:
    """`annotation` without Annotated wrappers, split into the members of a union."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return members(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        return [m for arg in typing.get_args(annotation) for m in members(arg)]
    return [annotation]
