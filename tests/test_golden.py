"""Golden files: the `list` and `summary` tables users read must not change by accident.

An intended change: run `python -m tests.regen_golden`, review `git diff tests/golden`, commit.
"""
import difflib

import pytest

from golden_cases import CASES, GOLDEN_DIR, render


@pytest.mark.parametrize("name", sorted(CASES))
def test_output_matches_golden_file(name):
    path = GOLDEN_DIR / name
    assert path.exists(), f"{path} missing: run `python -m tests.regen_golden`"
    expected, actual = path.read_text(), render(CASES[name])
    if actual != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True),
                                            f"golden/{name}", "now", n=1))
        pytest.fail(f"{name} changed (intended? `python -m tests.regen_golden`):\n{diff}")


def test_golden_files_are_real_tables():
    listing = (GOLDEN_DIR / "list.txt").read_text()
    assert "vgg16" in listing and "138,357,544" in listing and "15.47 G" in listing
    convnet = (GOLDEN_DIR / "summary_convnet.txt").read_text()
    assert "conv2d_1" in convnet and "18,496" in convnet and "123,690" in convnet
