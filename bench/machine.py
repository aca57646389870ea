"""The machine a benchmark ran on, in one line: CPU model, cores, cache sizes, kernel, Python.

    from machine import describe   # bench/ is on sys.path when a bench script runs
    print(f"machine: {describe()}")

Per-request CPU figures differ by 2-3x between 2-core VMs that all call themselves "AMD EPYC"
(bench/RESULTS.md, Proxy), and the caches are the first suspect when an interpreter's large
code footprint meets a small core: so every run says what it ran on. Read from sysfs
(/sys/devices/system/cpu/cpu0/cache), which needs no tool; a field that cannot be read is left
out rather than guessed.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

CACHE_DIR = Path("/sys/devices/system/cpu/cpu0/cache")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def caches() -> str:
    """Per-core cache sizes as the kernel reports them, e.g. `L1d 32K, L1i 32K, L2 1M, L3 32M`."""
    found: dict[str, str] = {}
    for index in sorted(CACHE_DIR.glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        name = f"L{level}" + {"Data": "d", "Instruction": "i"}.get(kind, "")
        found[name] = size
    return ", ".join(f"{name} {size}" for name, size in sorted(found.items()))


def describe() -> str:
    hypervisor = " (VM)" if "hypervisor" in _cpu_flags() else ""
    parts = [f"{cpu_model()}{hypervisor}", f"{os.cpu_count()} cores", caches(),
             f"Linux {platform.release()}", f"Python {platform.python_version()}"]
    return ", ".join(part for part in parts if part)


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


if __name__ == "__main__":
    print(describe())
