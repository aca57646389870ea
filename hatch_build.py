"""Build hook: compile the data path with mypyc (the modules `src/surge/_compiled.py` names),
in place beside their sources, for wheels and editable installs alike.

Where it cannot (no C compiler or no Python headers, as on a bare Debian; or
SURGE_PURE_PYTHON=1 at install), the build says why and goes on: the same modules then run
as plain Python, only slower. Nothing else changes."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SETUP = """
import sys
from setuptools import setup
from mypyc.build import mypycify

# -O2, not mypyc's default -O3: the same instructions per proxied request
# (bench/instructions.py: 25,857 against 25,864) for about 20% less compile time.
setup(name="surge-data-path", ext_modules=mypycify(
    ["--ignore-missing-imports", *sys.argv.pop(1).split(",")],
    opt_level="2", target_dir=sys.argv.pop(1)))
"""


def _say(app: Any, message: str) -> None:
    """`message` where the user sees it. pip captures a build's output and shows it only with
    -v or after a failure, so the hook's own display goes unseen; the terminal pip runs in is
    still the user's, so the line is written there too (not at all without one, as in CI;
    twice with `pip -v`, a small price for a minute of silence explained)."""
    app.display_info(message)
    try:
        with open("/dev/tty", "w") as tty:
            tty.write(f"\n{message}\n")
    except OSError:
        pass


def _modules(src: Path) -> list[str]:
    """MODULES from _compiled.py, read without importing the package."""
    tree = ast.parse((src / "surge" / "_compiled.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "MODULES":
            return [f"surge/{m}" for m in ast.literal_eval(node.value)]
    raise LookupError("MODULES not found in surge/_compiled.py")


class CompileDataPath(BuildHookInterface):
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if os.environ.get("SURGE_PURE_PYTHON"):
            self.app.display_info("surge: SURGE_PURE_PYTHON is set: not compiling the data path")
            return
        src = Path(self.root) / "src"
        # An earlier build's modules go first: a failed build must not leave them behind.
        for old in [*src.glob("*__mypyc.*.so"), *src.glob("surge/**/*.so")]:
            old.unlink()
        modules = _modules(src)
        _say(self.app, "surge: compiling the data path with mypyc: about 80 s on 2 cores, "
                       "silent until done (SURGE_PURE_PYTHON=1 skips it)")
        with tempfile.TemporaryDirectory() as temp:
            setup = Path(temp) / "setup.py"
            setup.write_text(SETUP)
            done = subprocess.run(
                [sys.executable, str(setup), ",".join(modules), str(Path(temp) / "c"),
                 "build_ext", "--inplace", "--build-temp", str(Path(temp) / "tmp"),
                 "--build-lib", str(Path(temp) / "lib")],
                cwd=src, capture_output=True, text=True,
                env={**os.environ, "MYPY_CACHE_DIR": str(Path(temp) / "mypy")})
        if done.returncode != 0:
            why = (done.stdout + done.stderr).strip().splitlines()[-3:]
            self.app.display_warning("surge: could not compile the data path; it will run as "
                                     "plain Python (slower). " + " | ".join(why))
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        build_data["artifacts"].extend(
            f"/src/{Path(m).with_suffix('')}.*.so" for m in modules)
        for shared in src.glob("*__mypyc.*.so"):  # the group's runtime, beside the package
            build_data["force_include"][str(shared)] = shared.name
