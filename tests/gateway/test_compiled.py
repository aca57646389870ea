"""The data path compiled with mypyc at install (hatch_build.py), and the same gateway from
its sources where no compiler was found: `surge up` says which one runs."""

from __future__ import annotations

import shutil
import sysconfig
from pathlib import Path

import httpx
import pytest

import surge
from gateway.stack import service, surge_yaml
from surge import _compiled
from surge.gateway import exchange


def _can_compile() -> bool:
    headers = Path(sysconfig.get_paths()["include"], "Python.h")
    return bool(shutil.which("cc") or shutil.which("gcc")) and headers.exists()


@pytest.mark.skipif(not _can_compile(), reason="no C compiler or Python headers here")
def test_an_install_with_a_c_compiler_runs_the_compiled_data_path():
    # 'stale' is an edited checkout, which runs its sources until reinstalled; never 'source'.
    assert surge.DATA_PATH != "source", "the build did not compile the data path"
    if surge.DATA_PATH == "compiled":
        assert Path(exchange.__file__).suffix == ".so"


def test_every_compiled_module_is_named_by_its_source_path():
    for relative in _compiled.MODULES:
        assert (_compiled.PACKAGE / relative).is_file(), relative


@pytest.mark.integration
def test_the_gateway_runs_from_its_sources_with_surge_pure_python(upstreams, gateway):
    (a,) = upstreams(1)
    gw = gateway(surge_yaml({"app": service([a])}, [{"prefix": "/", "service": "app"}]),
                 env={"SURGE_PURE_PYTHON": "1"})
    for _ in range(20):
        assert httpx.get(f"{gw.url}/name", timeout=5).status_code == 200
    banner = gw.stdout_path.read_text()
    assert "data path: plain Python" in banner
