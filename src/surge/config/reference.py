"""The key tables of the config reference (docs/config.md), generated from the JSON Schema so
the documentation lists exactly the keys the models accept, with their types and defaults.

`python -m surge.config.reference docs/config.md` rewrites the generated part of that file,
between the BEGIN/END markers; a test checks that it is current."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from surge.config.schema import json_schema

BEGIN = "<!-- BEGIN GENERATED KEY TABLES (python -m surge.config.reference docs/config.md) -->"
END = "<!-- END GENERATED KEY TABLES -->"


def key_rows() -> list[tuple[str, str, str, str]]:
    """(key path, type, default, description) for every key, depth first, as documented:
    `services.<name>.health.interval`, `routes[].service`."""
    schema = json_schema()
    return list(_rows(schema, "", schema["$defs"]))


def markdown_tables() -> str:
    """One table per top-level key."""
    sections: dict[str, list[str]] = {}
    for path, kind, default, description in key_rows():
        top = re.split(r"[.\[]", path, maxsplit=1)[0]
        cells = (f"`{path}`", kind, default, description)
        sections.setdefault(top, []).append("| " + " | ".join(_cell(c) for c in cells) + " |")
    parts = []
    for top, rows in sections.items():
        header = "| key | type | default | description |\n|---|---|---|---|"
        parts.append(f"### `{top}`\n\n{header}\n" + "\n".join(rows))
    return "\n\n".join(parts)


def _rows(model: dict, prefix: str, defs: dict) -> Iterator[tuple[str, str, str, str]]:
    required = set(model.get("required", ()))
    for name, prop in model.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        children = list(_nested(prop, path, defs))
        if name in required:
            default = "required"
        elif children and isinstance(prop.get("default"), dict):
            default = ""  # a section: the defaults are in the rows of its keys
        else:
            default = _default(prop)
        description = " ".join(prop.get("description", "").split())
        yield path, _type(prop, defs), default, description
        for child, child_path in children:
            yield from _rows(child, child_path, defs)


def _nested(prop: dict, path: str, defs: dict) -> Iterator[tuple[dict, str]]:
    """The models under a key, with the path their keys are documented under."""
    if "$ref" in prop:
        yield _resolve(prop, defs), path
    for branch in _branches(prop):
        yield from _nested(branch, path, defs)
    if prop.get("type") == "array" and "$ref" in prop.get("items", {}):
        yield _resolve(prop["items"], defs), f"{path}[]"
    if prop.get("type") == "object" and "$ref" in prop.get("additionalProperties", {}):
        yield _resolve(prop["additionalProperties"], defs), f"{path}.<name>"


def _resolve(ref: dict, defs: dict) -> dict:
    model = defs[ref["$ref"].rsplit("/", 1)[-1]]
    # A model that also accepts a plain string (UpstreamSpec) keeps its object in anyOf.
    return next((b for b in model.get("anyOf", ()) if "properties" in b), model)


def _type(prop: dict, defs: dict) -> str:
    if "$ref" in prop:
        model = defs[prop["$ref"].rsplit("/", 1)[-1]]
        forms = model.get("anyOf", [{"type": "mapping"}])
        return " or ".join(_type(b, defs) if "properties" not in b else "mapping" for b in forms)
    if _branches(prop):
        branches = [b for b in _branches(prop) if b.get("type") != "null"]
        formats = [b["format"] for b in branches if "format" in b and b.get("type") == "string"]
        if formats and formats[0] in _UNITS:
            text = formats[0]  # a unit string, or a bare number in the base unit
        else:
            text = " or ".join(dict.fromkeys(_type(b, defs) for b in branches))
        return f"{text} or null" if len(branches) < len(_branches(prop)) else text
    if "enum" in prop:
        return " | ".join(str(v) for v in prop["enum"])
    kind = prop.get("format") or prop.get("type", "any")
    if kind == "array":
        return f"list of {_type(prop.get('items', {}), defs)}"
    if kind == "object":
        values = prop.get("additionalProperties", {})
        return f"mapping of name to {_type(values, defs)}" if values else "mapping"
    return kind + _bounds(prop)


def _branches(prop: dict) -> list[dict]:
    return prop.get("anyOf") or prop.get("oneOf") or []


def _bounds(prop: dict) -> str:
    marks = [(">=", "minimum"), (">", "exclusiveMinimum"), ("<=", "maximum")]
    return "".join(f" {sign} {prop[key]}" for sign, key in marks if key in prop)


def _default(prop: dict) -> str:
    if "default" not in prop:
        return ""
    value = prop["default"]
    unit = next((b["format"] for b in _branches(prop) if b.get("format") in _UNITS), None)
    if unit and isinstance(value, int | float):
        return f"`{_UNITS[unit](value)}`"
    return f"`{value if isinstance(value, str) else json.dumps(value)}`"


def _duration_text(seconds: float) -> str:
    return f"{seconds * 1000:g}ms" if 0 < seconds < 1 else f"{seconds:g}s"


def _size_text(size: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


# How a default in a unit is written back, by the schema `format` of the field.
_UNITS: dict[str, Callable[[Any], str]] = {"duration": _duration_text, "size": _size_text}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def write(path: Path) -> None:
    """Replace the text between BEGIN and END in the file at `path` with fresh tables."""
    text = path.read_text(encoding="utf-8")
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    path.write_text(f"{head}{BEGIN}\n\n{markdown_tables()}\n\n{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    write(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/config.md"))
