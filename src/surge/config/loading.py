"""Reading surge.yaml: YAML (1.2-style booleans, duplicate keys refused), `${VAR}`
interpolation, validation into `Config`, and the not-yet-supported pass.

Every problem found is collected and raised together in one `ConfigError`, so a bad file is
fixed in one round, and never starts half a stack. Finding the file is `find_config`."""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from surge.config.interpolation import Interpolation
from surge.config.models import Config
from surge.config.problems import from_validation_error, misspelt_keys_first
from surge.config.support import check_supported
from surge.errors import ConfigError

DEFAULT_FILE = "surge.yaml"


class _Loader(yaml.SafeLoader):
    """Safe YAML where only true/false are booleans (`access_log: off` stays the string
    'off', `X-Canary: yes` stays 'yes') and a repeated key is an error."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor`, flattened by SafeLoader; later keys override it
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool | None):
                continue  # an unhashable key: SafeLoader reports it below
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_BOOL = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


def parse(
    text: str, source: str = DEFAULT_FILE, *, env: Mapping[str, str] | None = None,
    check_support: bool = True,
) -> Config:
    """The `Config` that `text` describes, or `ConfigError` listing every problem.

    `env` is the environment for `${VAR}` (default `os.environ`). Libraries that only read
    their own section pass `check_support=False` to accept keys `surge up` cannot run yet."""
    data = _read_yaml(text, source)
    expanded = Interpolation(data, os.environ if env is None else env)
    problems = [f"{where}: {message}" for where, message in expanded.problems.items()]
    # Each key is reported once, by the first pass that finds it wrong: a value whose
    # variable is unset is not also invalid, an invalid value is not also unsupported.
    reported = set(expanded.problems)
    config = None
    try:
        config = Config.model_validate(expanded.data, context={})
    except ValidationError as error:
        found = from_validation_error(error, expanded.data, Config)
        problems += [p for p in found if not _under_any(p, reported)]
        reported |= {p.split(": ", 1)[0] for p in found}
    if check_support:
        problems += [p for p in check_supported(expanded.data) if not _under_any(p, reported)]
    if problems or config is None:
        raise ConfigError(misspelt_keys_first(problems))
    return config


def load(path: str | os.PathLike[str], **options: Any) -> Config:
    """Read and parse the file at `path` (options as for `parse`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise ConfigError([f"{path}: cannot read: {reason}"]) from None
    return parse(text, str(path), **options)


def find_config(explicit: str | None = None) -> Path | None:
    """The explicit path if given, else `./surge.yaml` when present, else None."""
    if explicit:
        return Path(explicit)
    default = Path(DEFAULT_FILE)
    return default if default.is_file() else None


def _read_yaml(text: str, source: str) -> dict:
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        message = " ".join(filter(None, (error.context, error.problem)))
        raise ConfigError([f"{where}: {message}"]) from None
    except yaml.YAMLError as error:
        raise ConfigError([f"{source}: {error}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: expected a mapping of keys at the top level, "
                           f"got {type(data).__name__}"])
    return data


def _under_any(problem: str, locations: Collection[str]) -> bool:
    return any(problem.startswith(f"{where}:") or problem.startswith(f"{where}.")
               or problem.startswith(f"{where}[") for where in locations)
