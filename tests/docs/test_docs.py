"""The user guide holds together: README.md opens with its title, one sentence and the two
commands a new user pastes,
every relative link in README.md and docs/*.md reaches a file, and every `surge COMMAND` the
docs show is a command that `surge --help` lists (and `surge COMMAND ACTION` an action that
`surge COMMAND --help` lists). Pure reading plus `surge --help` in a subprocess: no servers."""

from __future__ import annotations

import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
GUIDE = [README, *sorted((ROOT / "docs").glob("*.md"))]

RUN_QUICKSTART = "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/surge up"
RUN_TESTS = "bash .ci/run"

_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_COMMENT = re.compile(r"(?:^|\s)#.*$")
# `surge WORD [WORD]` where `surge` is the command itself: at the start of the code, or after
# a space, `$`, `/` (`.venv/bin/surge`), a quote or an opening bracket.
_INVOCATION = re.compile(r"(?:^|(?<=[\s$/\"'(]))surge ([a-z][a-z0-9-]*)(?: ([a-z][a-z0-9-]*))?")
# An action in `surge COMMAND --help`: a choice is listed with four spaces of indentation.
_CHOICE = re.compile(r"^ {4}([a-z][a-z0-9-]*)(?:\s|$)", re.MULTILINE)


def _split(text: str) -> tuple[list[str], list[str]]:
    """(prose lines, lines inside fenced code blocks) of a Markdown text."""
    prose: list[str] = []
    code: list[str] = []
    fence = None
    for line in text.splitlines():
        opened = _FENCE.match(line)
        if fence is None and opened:
            fence = opened.group(1)
        elif fence is not None and line.strip().startswith(fence):
            fence = None
        else:
            (prose if fence is None else code).append(line)
    return prose, code


def _opening(text: str) -> tuple[str, str, str]:
    """(first line, the paragraph after it joined into one line, everything after that)."""
    head, _, rest = text.lstrip("\n").partition("\n")
    paragraph, _, rest = rest.lstrip("\n").partition("\n\n")
    return head, " ".join(paragraph.split()), rest


def _leading_code_blocks(text: str) -> tuple[list[list[str]], str]:
    """The fenced code blocks a text opens with (only blank lines between them), and the
    first line of what follows them."""
    lines = iter(text.splitlines())
    blocks: list[list[str]] = []
    for line in lines:
        if not line.strip():
            continue
        if not _FENCE.match(line):
            return blocks, line
        block = []
        for inner in lines:
            if _FENCE.match(inner):
                break
            block.append(inner)
        blocks.append(block)
    return blocks, ""


def _relative_targets(text: str) -> list[str]:
    """Link targets outside code that are neither URLs nor in-page anchors."""
    prose = "\n".join(_CODE_SPAN.sub("", line) for line in _split(text)[0])
    targets = _INLINE_LINK.findall(prose) + _REFERENCE_LINK.findall(prose)
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:|#", t, re.IGNORECASE)]


def _code_of(text: str) -> list[str]:
    """Everything a reader would paste: code block lines without their comments (`# ...`,
    prose in shell and YAML) and inline code spans."""
    prose, code = _split(text)
    spans = [m.group(2) for line in prose for m in _CODE_SPAN.finditer(line)]
    return [_COMMENT.sub("", line) for line in code] + spans


def _invocations(text: str) -> set[tuple[str, str | None]]:
    found = set()
    for code in _code_of(text):
        for command, action in _INVOCATION.findall(code):
            found.add((command, action or None))
    return found


@cache
def _choices(*command: str) -> frozenset[str]:
    """The subcommands (or actions) that `surge [COMMAND] --help` lists."""
    surge = Path(sys.executable).with_name("surge")
    argv = [str(surge)] if surge.exists() else [sys.executable, "-m", "surge.cli"]
    result = subprocess.run([*argv, *command, "--help"], capture_output=True, text=True,
                            timeout=60, check=True)
    return frozenset(_CHOICE.findall(result.stdout))


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_the_readme_opens_with_a_title_a_sentence_then_the_commands_for_quickstart_and_tests():
    title, sentence, rest = _opening(README.read_text())
    assert title == "# Surge"
    assert sentence.endswith(".") and sentence.count(". ") == 0 and not _FENCE.match(sentence)
    # the silent minute of the compile is said before it starts
    assert "compiles" in sentence and "80 s" in sentence
    blocks, after = _leading_code_blocks(rest)
    assert blocks == [[RUN_QUICKSTART], [RUN_TESTS]]
    assert after.strip(), "something must follow the two commands"
    assert (ROOT / ".ci" / "run").is_file()


def test_the_quickstart_banner_shown_in_the_docs_is_what_surge_up_prints(capsys):
    from surge.app.commands import QUICKSTART, print_banner
    from surge.config import load

    path = QUICKSTART / "surge.yaml"
    print_banner(path, load(path), True)
    banner = capsys.readouterr().out.replace(str(ROOT), "/path/to/surge").strip()
    for page in (README, ROOT / "docs" / "quickstart.md"):
        assert banner in page.read_text(), f"{_name(page)} shows another banner than:\n{banner}"


def test_the_surge_yaml_in_the_readme_is_one_surge_up_accepts():
    from surge.config import parse

    blocks = re.findall(r"^```yaml\n(.*?)^```", README.read_text(), re.MULTILINE | re.DOTALL)
    assert blocks, "the README shows a surge.yaml"
    config = parse(blocks[0])
    assert len(blocks[0].splitlines()) <= 5
    assert config.gateway.admin and config.services and config.routes


def test_every_metric_family_of_the_gateway_is_listed_in_operations():
    from surge.observe.metrics import GatewayCollector, GatewayStats

    text = (ROOT / "docs" / "operations.md").read_text()
    families = GatewayCollector(GatewayStats(), lambda: [], lambda: 0, lambda: 0).collect()
    names = [f.name + ("_total" if f.type == "counter" else "") for f in families]
    assert [name for name in names if f"`{name}`" not in text] == []


def test_the_ci_script_runs_the_suite_with_the_virtualenvs_pytest():
    script = (ROOT / ".ci" / "run").read_text()
    assert ".venv/bin/python -m pytest" in script


@pytest.mark.parametrize("path", GUIDE, ids=_name)
def test_every_relative_link_points_at_an_existing_file(path: Path):
    broken = [target for target in _relative_targets(path.read_text())
              if not (path.parent / target.split("#", 1)[0]).exists()]
    assert broken == []


@pytest.mark.parametrize("path", GUIDE, ids=_name)
def test_every_surge_command_shown_exists_in_surge_help(path: Path):
    commands = _choices()
    assert {"up", "check"} <= commands, "could not read the command list from `surge --help`"
    unknown = []
    for command, action in sorted(_invocations(path.read_text()), key=str):
        if command not in commands:
            unknown.append(f"surge {command}")
        elif action is not None and _choices(command) and action not in _choices(command):
            unknown.append(f"surge {command} {action}")
    assert unknown == []


def test_the_readme_shows_every_command_of_surge_help():
    shown = {command for command, _ in _invocations(README.read_text())}
    assert sorted(_choices() - shown) == []


def test_the_readme_and_the_guide_pages_link_to_each_other():
    readme = set(_relative_targets(README.read_text()))
    for page in ("quickstart", "architecture", "operations", "config", "admin"):
        assert f"docs/{page}.md" in readme


def test_the_link_finder_sees_links_outside_code_only():
    text = ("See [the guide](docs/a.md) and [web](https://x.y/) and [here](#top).\n"
            "`[not a link](b.md)`\n```\n[code](c.md)\n```\n[ref]: docs/d.md\n")
    assert _relative_targets(text) == ["docs/a.md", "docs/d.md"]


def test_the_command_finder_reads_code_and_ignores_prose():
    text = ("surge keeps things up; `surge up FILE`, and `.venv/bin/surge check`.\n"
            "```\n$ surge keys create --name x  # then surge stores it\n"
            "command: \"surge worker app:queue\"\n```\n")
    assert _invocations(text) == {("up", None), ("check", None), ("keys", "create"),
                                  ("worker", "app")}
