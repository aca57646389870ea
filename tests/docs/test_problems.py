"""Every problem Surge can answer with is documented, and none is made outside the table.

The table in `surge.observe.problem` is the one source: docs/problems.md must list exactly its
entries (status, type, title, reason); the sources must not spell a problem by hand (a status
literal passed where a problem goes, a type or its URI as a string, a counted reason as a
string); the problem documents the guide shows must carry their type's status and title.
Pure reading: no servers."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from surge.observe import problem as p
from surge.observe.problem import PROBLEM_TYPE_BASE, TABLE

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "surge"
PAGE = ROOT / "docs" / "problems.md"
TABLE_MODULE = SRC / "observe" / "problem.py"

# | 400 | `bad-request` | Bad Request | `bad_request` | when |   (`-` for no reason)
_ROW = re.compile(r"^\| (\d{3}) \| `([a-z-]+)` \| ([^|]+?) \| (?:`([a-z_]+)`|-) \|", re.MULTILINE)
# The calls that take a problem where a hand-written answer once took a status.
_TAKES_A_PROBLEM = {"fail", "reject", "refuse", "Refused", "retry_or_fail", "problem",
                    "problem_document", "problem_response", "Answer", "overloaded"}


def _documented() -> list[tuple[int, str, str, str]]:
    return [(int(status), type_, title, reason or "")
            for status, type_, title, reason in _ROW.findall(PAGE.read_text())]


def _entries() -> list[tuple[int, str, str, str]]:
    return [(e.status, e.type, e.title, e.reason) for e in TABLE]


def test_the_page_lists_every_problem_of_the_table_once_and_nothing_else() -> None:
    documented = _documented()
    assert len(documented) == len(set(documented)), "a row is listed twice"
    missing = set(_entries()) - set(documented)
    assert not missing, f"docs/problems.md lacks {sorted(missing)}"
    unknown = set(documented) - set(_entries())
    assert not unknown, f"docs/problems.md lists problems the code does not have: {unknown}"


def test_the_page_names_the_reasons_counted_without_a_problem() -> None:
    text = PAGE.read_text()
    for reason in p.CUT_OFF_REASONS:
        assert f"`{reason}`" in text, reason


def test_one_type_has_one_status_and_one_title_and_one_reason_one_entry() -> None:
    # RFC 9457: a type's title does not change from occurrence to occurrence.
    by_type: dict[str, tuple[int, str]] = {}
    for entry in TABLE:
        assert by_type.setdefault(entry.type, (entry.status, entry.title)) == (
            entry.status, entry.title), entry
    pairs = [(e.type, e.reason) for e in TABLE]
    assert len(pairs) == len(set(pairs))
    assert not {e.reason for e in TABLE} & set(p.CUT_OFF_REASONS)


def _problem_strings() -> set[str]:
    return ({e.type for e in TABLE} | {e.uri for e in TABLE}
            | {e.reason for e in TABLE if e.reason} | set(p.CUT_OFF_REASONS))


def _hand_made(path: Path) -> list[str]:
    """What in one source file spells a problem by hand, each as `line: what`."""
    tree = ast.parse(path.read_text(), str(path))
    spelled = _problem_strings()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if (name in _TAKES_A_PROBLEM and isinstance(first, ast.Constant)
                    and isinstance(first.value, int)):
                found.append(f"{node.lineno}: {name}({first.value}, ...)")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value in spelled or node.value.startswith(PROBLEM_TYPE_BASE):
                found.append(f"{node.lineno}: {node.value!r}")
    return found


def test_no_source_makes_a_problem_outside_the_table() -> None:
    hand_made = {str(path.relative_to(SRC)): found
                 for path in sorted(SRC.rglob("*.py")) if path != TABLE_MODULE
                 for found in [_hand_made(path)] if found}
    assert not hand_made, f"problems spelled outside surge.observe.problem: {hand_made}"


def test_the_scan_finds_a_hand_made_problem(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('ex.fail(503, "overloaded", "busy", "max_pending")\n'
                      'stats.failed["no_route"] += 1\n'
                      'raise Refused(p.BAD_REQUEST, "fine")\n')
    assert _hand_made(sample) == ["1: fail(503, ...)", "1: 'overloaded'", "1: 'max_pending'",
                                  "2: 'no_route'"]


def test_the_problem_documents_the_guide_shows_match_the_table() -> None:
    by_uri = {e.uri: e for e in TABLE}
    shown = 0
    for page in sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]:
        for match in re.finditer(r"\{\"type\": ?\"" + re.escape(PROBLEM_TYPE_BASE) + r".*?\}",
                                 page.read_text(), re.DOTALL):
            doc = json.loads(match.group(0))
            entry = by_uri.get(doc["type"])
            assert entry is not None, f"{page.name}: unknown type {doc['type']}"
            assert (doc["status"], doc["title"]) == (entry.status, entry.title), (page.name, doc)
            shown += 1
    assert shown >= 5
