"""The data path's modules that the build compiles with mypyc (`hatch_build.py`), and the one
rule at import time: the compiled modules are used together or not at all.

A build with a C compiler puts a compiled module beside each of these sources; without one,
the sources run as they are. An edited checkout (under `src/`, a source newer than its
compiled module) or `SURGE_PURE_PYTHON=1` runs all of them from source, so an edit is never
silently ignored; `pip install -e .` compiles them again. (In an installed wheel the file
times say nothing: pip writes each file when it unpacks it.)"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

# Relative to the package. Compiled as one group: they call each other's native classes.
MODULES = (
    "gateway/client.py",
    "gateway/deprecation.py",
    "gateway/exchange.py",
    "gateway/policy.py",
    "gateway/ratelimit.py",
    "gateway/hedge.py",
    "gateway/recovery.py",
    "gateway/request_ids.py",
    "gateway/server.py",
    "gateway/snapshot.py",
    "http/flow.py",
    "http/headers.py",
    "observe/metrics.py",
    "observe/problem.py",
    "routing/paths.py",
    "routing/table.py",
    "routing/versions.py",
    "upstreams/balancers/__init__.py",
    "upstreams/balancers/base.py",
    "upstreams/balancers/hash.py",
    "upstreams/balancers/least_conn.py",
    "upstreams/balancers/p2c.py",
    "upstreams/balancers/candidates.py",
    "upstreams/balancers/random.py",
    "upstreams/balancers/round_robin.py",
    "upstreams/balancers/weighted.py",
    "upstreams/caller.py",
    "upstreams/connection.py",
    "upstreams/idle_close.py",
    "upstreams/outlier.py",
    "upstreams/pool.py",
    "upstreams/service.py",
    "upstreams/upstream.py",
)

PACKAGE = Path(__file__).parent
log = logging.getLogger("surge")


def _name(relative: str) -> str:
    dotted = "surge." + relative.removesuffix(".py").replace("/", ".")
    return dotted.removesuffix(".__init__")


def _built(source: Path) -> Path | None:
    """The compiled module beside `source`, if there is one."""
    stem = source.stem
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = source.with_name(stem + suffix)
        if candidate.exists():
            return candidate
    return None


def state() -> str:
    """'compiled', 'source' (none built: no compiler at install) or 'stale' (an edited
    checkout, or SURGE_PURE_PYTHON=1: the sources run although compiled modules exist)."""
    built = [(PACKAGE / m, _built(PACKAGE / m)) for m in MODULES]
    if not any(b for _, b in built):
        return "source"
    checkout = PACKAGE.parent.name == "src"
    if os.environ.get("SURGE_PURE_PYTHON") or any(
            b is None or (checkout and s.stat().st_mtime > b.stat().st_mtime) for s, b in built):
        return "stale"
    return "compiled"


class _Sources:
    """A meta path finder that loads the compiled group's modules from their sources."""

    names = {_name(m): PACKAGE / m for m in MODULES}

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        source = self.names.get(fullname)
        if source is None:
            return None
        return importlib.util.spec_from_file_location(
            fullname, source,
            submodule_search_locations=[str(source.parent)] if source.stem == "__init__" else None)


def choose() -> str:
    """Decide once, before any of the group is imported; returns the state."""
    found = state()
    if found == "stale":
        sys.meta_path.insert(0, _Sources())
        if not os.environ.get("SURGE_PURE_PYTHON"):
            log.warning("surge: the compiled data path is older than its sources; running "
                        "the sources (rebuild with: pip install -e .)")
    return found
