"""``errors.first_line``: the one helper that turns a caught exception into the text of a one-line
message (every module uses it; no inline ``str(e).splitlines()[0]`` copies are left)."""
from __future__ import annotations

import re
from pathlib import Path

from kerascnn.errors import first_line

ROOT = Path(__file__).resolve().parents[1]


def test_first_line_of_an_exception():
    assert first_line(ValueError("first line\nsecond")) == "first line"
    assert first_line(ValueError("\n  \n  indented first\nsecond")) == "indented first"
    assert first_line(ValueError("\x1b[31mred\x1b[0m text")) == "red text"
    assert first_line(KeyError()) == "KeyError" and first_line(OSError(""), default="") == ""
    assert first_line(ValueError("abcdef"), 3) == "abc"
    graph = ("Graph execution error:\n\nDetected at node DecodeJpeg defined at (most recent call last):\n"
             "  File \"x.py\", line 1\n{{function_node __wrapped__IteratorGetNext}} jpeg::Uncompress failed. "
             "Invalid JPEG data or crop window. [[{{node DecodeJpeg}}]] [Op:IteratorGetNext] name:")
    assert first_line(RuntimeError(graph)) == "jpeg::Uncompress failed. Invalid JPEG data or crop window."
    assert first_line(RuntimeError(graph), tf=False) == "Graph execution error:"


def test_no_inline_copies_of_the_first_line_helper_are_left():
    """(``cli.one_line`` stays: the CLI's wrapper, which adds "while reading the data:" and the
    400-character cut with an ellipsis.)"""
    copies = [f"{p.relative_to(ROOT)}:{i}" for p in (ROOT / "kerascnn").rglob("*.py") if p.name != "errors.py"
              for i, line in enumerate(p.read_text().splitlines(), 1)
              if re.search(r"str\((e|exc)\)(\.strip\(\))?\.splitlines\(\)|def _?first_line\(", line)]
    assert copies == [], copies
