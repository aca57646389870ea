"""The layering, as rules over the imports in src/surge (read from the source, not by importing
it, so an import under `if TYPE_CHECKING:` or inside a function counts as well):

- the pure cores never import the data path (`gateway`), the admin API or the process wiring
  (`app`);
- `upstreams` never imports `gateway`: it knows its callers as `upstreams.caller.Caller`;
- `http` (what both sides of the proxy share) imports nothing of Surge's;
- the data path never imports the process wiring."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Modules and packages that decide without I/O (DESIGN.md: pure core, I/O at the edges).
PURE_CORES = (
    "surge.config",
    "surge.http",
    "surge.routing",
    "surge.upstreams.balancers",
    "surge.upstreams.health",
    "surge.upstreams.idle_close",
    "surge.upstreams.outlier",
    "surge.upstreams.retry",
    "surge.ratelimit.algorithms",
    "surge.scaling.policy",
    "surge.scaling.demand",
    "surge.scaling.lifecycle",
    "surge.scaling.groups",
    "surge.scaling.profile",
    "surge.jobs.states",
    "surge.jobs.backoff",
)
WIRING_AND_EDGES = ("surge.gateway", "surge.admin", "surge.app")


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted((SRC / "surge").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()
# The packages and top-level modules of surge, but `http` and the package itself.
EVERYTHING_BUT_HTTP = tuple(sorted({".".join(m.split(".")[:2]) for m in MODULES}
                                   - {"surge", "surge.http"}))


def imports(module: str) -> list[tuple[int, str]]:
    """(line, imported module) for every Surge import in `module`, wherever it stands."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from surge import x` may name a module: count `surge.x` as imported too.
            found += [(node.lineno, base)]
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names
                      if f"{base}.{alias.name}" in MODULES]
    return [(line, name) for line, name in found if _within(name, "surge")]


def violations(importers: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{MODULES[module].relative_to(SRC)}:{line} imports {name}"
        for module in MODULES if any(_within(module, i) for i in importers)
        for line, name in imports(module) if any(_within(name, f) for f in forbidden)
    ]


def test_the_scan_sees_imports_under_type_checking_and_inside_functions():
    assert "surge.gateway.server" in [name for _, name in imports("surge.gateway.client")]
    assert "surge.app.run" in [name for _, name in imports("surge.app.commands")]
    assert violations(("surge.app",), ("surge.gateway",))  # a rule can fail


def test_every_pure_core_named_here_exists():
    assert [core for core in PURE_CORES if core not in MODULES] == []


@pytest.mark.parametrize("importers, forbidden", [
    (PURE_CORES, WIRING_AND_EDGES),
    (("surge.upstreams",), ("surge.gateway",)),
    (("surge.http",), EVERYTHING_BUT_HTTP),
    (("surge.gateway",), ("surge.app",)),
], ids=["pure cores", "upstreams", "http", "data path"])
def test_a_layer_never_imports_what_sits_above_it(importers, forbidden):
    assert violations(importers, forbidden) == []
