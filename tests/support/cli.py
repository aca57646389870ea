"""The `surge` command as a user runs it: the console script installed beside this Python,
in a subprocess; and what every CLI failure must look like (one line, no traceback, its
exit code: 2 for bad input, 1 for a failure elsewhere)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SURGE = Path(sys.executable).with_name("surge")


def surge(*args: str, cwd: Path, env: dict[str, str] | None = None,
          timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SURGE), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def fails_in_one_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    """The one line `done` printed on stderr, after checking its exit code and that no
    traceback reached the user."""
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    assert done.returncode == code, output
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, output
    return lines[0]
