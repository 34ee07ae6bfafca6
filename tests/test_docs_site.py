"""The documentation site: it builds in strict mode (a broken link, anchor or API reference
fails), the architecture page names every module, and the README stays a front door whose links
lead somewhere."""
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mkdocs_builds_in_strict_mode(tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "run_values" in api and "conv_output_size" in api  # mkdocstrings rendered the docstrings
    assert (tmp_path / "site" / "benchmarks" / "RESULTS" / "index.html").is_file()


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
