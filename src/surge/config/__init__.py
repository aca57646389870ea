"""surge.yaml: the models (`Config`), loading with `${VAR}` interpolation and every problem
located, the not-yet-supported pass, and the JSON Schema. `surge check` and `surge schema`
live in `commands.py`.

The exports load on first use, so importing a submodule (the CLI's `commands`, `units`) does
not pay for building the pydantic models."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from surge.config.loading import find_config, load, parse
    from surge.config.models import Config
    from surge.config.support import check_supported

_EXPORTS = {
    "Config": "surge.config.models",
    "check_supported": "surge.config.support",
    "find_config": "surge.config.loading",
    "load": "surge.config.loading",
    "parse": "surge.config.loading",
}

__all__ = ["Config", "check_supported", "find_config", "load", "parse"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'surge.config' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
