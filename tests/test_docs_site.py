"""The lecture notebooks and the documentation site.

The five notebooks run in a real Jupyter kernel (nbclient) and every ``check(...)`` in them holds;
their executed copies (``build/notebooks/``) are what the site then shows, so the tests below run
in this order: notebooks first, then ``mkdocs build --strict`` (a broken link, anchor or API
reference fails), which reuses their outputs instead of executing them again. The architecture
page names every module, and the README stays a front door whose links lead somewhere."""
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("notebook_runner", ROOT / "notebooks" / "run.py")
RUNNER = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(RUNNER)
NOTEBOOKS = RUNNER.names()
EXECUTED = {}


def _table_counts() -> dict:
    """docs/notebooks.md: notebook name -> (numbers checked, lecture errors shown)."""
    rows = re.findall(r"^\| \[[^]]+\]\(notebooks/(\w+)\.ipynb\) \| [^|]+ \| (\d+) \| (\d+) \|$",
                      (ROOT / "docs" / "notebooks.md").read_text(), re.M)
    return {name: (int(n), int(e)) for name, n, e in rows}


def test_five_notebooks_in_percent_format_each_naming_its_lecture():
    import jupytext

    assert len(NOTEBOOKS) == 5 and set(_table_counts()) == set(NOTEBOOKS)
    files = set()
    for name in NOTEBOOKS:
        nb = jupytext.read(ROOT / "notebooks" / f"{name}.py")
        first = nb.cells[0].source
        files.update(re.findall(r"shared/lectures/(\d{3}_[0-9a-f]{16}\.txt)", first))
    assert len(files) == 5, files


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_lecture_notebook_runs_and_its_checks_hold(name):
    import nbformat

    path = RUNNER.execute(name)   # a failing check is a CellExecutionError naming the cell
    nb = nbformat.read(path, as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    m = re.search(r"(\d+) numbers checked against kerascnn; (\d+) lecture errors? shown", text)
    assert m, "the notebook ends with done()"
    assert (int(m.group(1)), int(m.group(2))) == _table_counts()[name], "update the table in docs/notebooks.md"
    EXECUTED[name] = path


def test_mkdocs_builds_in_strict_mode(tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    site = tmp_path / "site"
    api = (site / "api" / "index.html").read_text()
    assert "run_values" in api and "conv_output_size" in api  # mkdocstrings rendered the docstrings
    assert (site / "benchmarks" / "RESULTS" / "index.html").is_file()
    for name in NOTEBOOKS:
        page = (site / "notebooks" / name / "index.html").read_text()
        if name in EXECUTED:   # executed above: the site shows those outputs, not executed again
            assert "numbers checked against kerascnn" in page, name


def _modules():
    for path in sorted((ROOT / "kerascnn").rglob("*.py")):
        rel = path.relative_to(ROOT)
        if "__pycache__" not in rel.parts:
            yield rel


def test_architecture_page_names_every_module():
    text = (ROOT / "docs" / "architecture.md").read_text()
    missing = []
    for rel in _modules():
        if len(rel.parts) == 2:  # kerascnn/x.py: its own row
            found = f"`{rel.as_posix()}`" in text
        else:  # kerascnn/pkg/x.py: the package's row names the file
            row = next((l for l in text.splitlines() if l.startswith(f"| `{'/'.join(rel.parts[:-1])}/`")), "")
            found = rel.name == "__init__.py" and bool(row) or f"`{rel.name}`" in row
        if not found:
            missing.append(rel.as_posix())
    assert not missing, f"add these modules to docs/architecture.md: {missing}"


def test_readme_is_a_front_door_whose_links_exist():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    assert text.count("<!-- quickstart -->") == 2
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    assert links, "the README links into the documentation"
    broken = [l for l in links if not l.startswith("http") and not (ROOT / l).exists()]
    assert not broken, broken
