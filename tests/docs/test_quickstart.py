"""docs/quickstart.md section 7 works as written: the surge.yaml it writes (typo fixed, as the
page does) makes `surge up` start the two replicas itself and serve them. Ports and the
Python path are the only things changed: the page's fixed ports may be taken by a parallel
test, and the page's `.venv/bin/python` is this test's interpreter."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import httpx
import pytest

from support.processes import ManagedProcess, free_port, wait_for_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "docs" / "quickstart.md"


def section_7_config() -> str:
    section = QUICKSTART.read_text().split("## 7.", 1)[1]
    found = re.search(r"cat > surge\.yaml <<'EOF'\n(.*?)^EOF$", section, re.MULTILINE | re.DOTALL)
    assert found, "section 7 writes a surge.yaml with a heredoc"
    assert "sed -i 's/apii/api/' surge.yaml" in section
    return found.group(1).replace("apii", "api")


def test_the_surge_yaml_of_section_7_makes_surge_up_run_and_serve_its_replicas(tmp_path):
    port, admin = free_port(), free_port()
    text = (section_7_config()
            .replace("127.0.0.1:8000", f"127.0.0.1:{port}")
            .replace("127.0.0.1:9000", f"127.0.0.1:{admin}")
            .replace(".venv/bin/python examples/", f"{sys.executable} {ROOT}/examples/"))
    (tmp_path / "surge.yaml").write_text(text)
    surge = Path(sys.executable).with_name("surge")
    with ManagedProcess("surge-up", [str(surge), "up"], tmp_path, cwd=tmp_path) as gateway:
        gateway.spawn()
        wait_for_port("127.0.0.1", port, 30.0)
        names: set[str] = set()
        deadline = time.monotonic() + 20
        while len(names) < 2 and time.monotonic() < deadline:
            answer = httpx.get(f"http://127.0.0.1:{port}/", headers={"Connection": "close"})
            if answer.status_code == 200:
                names.add(answer.json()["replica"])
            else:
                time.sleep(0.2)
    assert names == {"api-1", "api-2"}, gateway.logs()
