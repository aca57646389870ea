"""`${VAR}` and `${VAR:-default}` in the string values of a parsed surge.yaml, read from an
environment mapping the caller passes in. `$${` stands for a literal `${`.

Runs on the parsed YAML tree, so a value from the environment is never read as YAML syntax;
keys are left alone. An unset variable without a default is a located problem."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from surge.config.problems import location

# `$${`, or `${NAME}` / `${NAME:-default}`, or any other `${` (malformed).
_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")


class Interpolation:
    """The result of interpolating a tree: the new tree and the problems, by location."""

    def __init__(self, data: Any, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: dict[str, str] = {}
        self.data = self._walk(data, ())

    def _walk(self, node: Any, path: tuple[str | int, ...]) -> Any:
        if isinstance(node, dict):
            return {key: self._walk(value, (*path, key)) for key, value in node.items()}
        if isinstance(node, list):
            return [self._walk(value, (*path, i)) for i, value in enumerate(node)]
        if isinstance(node, str) and "${" in node:
            return _REFERENCE.sub(lambda m: self._replace(m, location(path)), node)
        return node

    def _replace(self, match: re.Match[str], where: str) -> str:
        text, name, default = match.group(0), match.group(1), match.group(2)
        if text == "$${":
            return "${"
        if name is None:
            self.problems.setdefault(where, "malformed '${...}': write ${NAME}, ${NAME:-default} "
                                            "or $${ for a literal '${'")
            return text
        value = self.env.get(name)
        if not value and default is not None:  # like the shell: empty takes the default too
            return default
        if value is None:
            self.problems.setdefault(where, f"environment variable {name!r} is not set")
            return text
        return value
