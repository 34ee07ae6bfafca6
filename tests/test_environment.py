"""Every ``KERASCNN_*`` environment variable the package reads is in the one table of
docs/environment.md, named with the module that reads it, and the table names no other."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = re.compile(r"KERASCNN_[A-Z0-9_]*[A-Z0-9]")


def _table() -> dict:
    rows = {}
    for line in (ROOT / "docs" / "environment.md").read_text().splitlines():
        m = re.match(r"\| `(KERASCNN_\w+)` \|.*\| `([^`]+)` \|$", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def test_every_variable_in_the_code_is_in_the_table_and_back():
    used = {}
    for path in (ROOT / "kerascnn").rglob("*.py"):
        for name in NAME.findall(path.read_text()):
            used.setdefault(name, set()).add(path.relative_to(ROOT).as_posix())
    table = _table()
    assert len(used) >= 11                                  # the scan is real
    assert sorted(set(used) - set(table)) == [], "document these in docs/environment.md"
    assert sorted(set(table) - set(used)) == [], "the table names variables nothing reads"
    for name, module in table.items():
        assert module in used[name], f"{name}: read by {sorted(used[name])}, the table says {module}"
