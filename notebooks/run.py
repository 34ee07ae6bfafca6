"""Execute the lecture companion notebooks: ``python notebooks/run.py [NAME ...]``.

Each ``notebooks/NAME.py`` (jupytext "percent" format, the only copy in git) becomes a notebook
that a real Jupyter kernel executes cell by cell (nbclient); a failing ``check(...)`` fails the
run. The executed notebook, with its outputs, is written to ``build/notebooks/NAME.ipynb``, where
the documentation site picks it up (``docs/hooks.py``) instead of executing it again.

Cells tagged ``train-api`` use ``kerascnn.train/evaluate/predict/export``; while this kerascnn has
no such function they are left out of the run (and a note says so in the notebook).
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "notebooks"
OUT = ROOT / "build" / "notebooks"
TRAIN_TAG = "train-api"


def names() -> list:
    return sorted(p.stem for p in SOURCES.glob("lecture*.py"))


def source_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def has_train_api() -> bool:
    import kerascnn

    return callable(getattr(kerascnn, "train", None))


def load(name: str, train_api: bool | None = None):
    """The notebook of ``notebooks/NAME.py``, with the training cells left out when there is no API."""
    import jupytext
    import nbformat

    path = SOURCES / f"{name}.py"
    nb = jupytext.read(path)
    if not (has_train_api() if train_api is None else train_api):
        kept = [c for c in nb.cells if TRAIN_TAG not in c.get("metadata", {}).get("tags", [])]
        if len(kept) < len(nb.cells):
            kept.append(nbformat.v4.new_markdown_cell(
                "*The training cells above need `kerascnn.train`, which this version of kerascnn does not "
                "have; they were not run.*"))
            nb.cells = kept
    nb.metadata.setdefault("kerascnn", {})["source_sha256"] = source_digest(path)
    return nb


def execute(name: str, out_dir: Path = OUT, timeout: int = 300, train_api: bool | None = None) -> Path:
    """Run ``notebooks/NAME.py`` in a fresh kernel (working directory ``notebooks/``) and write the
    executed ``out_dir/NAME.ipynb``; raises ``nbclient`` 's CellExecutionError on a failing cell."""
    import nbformat
    from nbclient import NotebookClient

    nb = load(name, train_api)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", MPLBACKEND="module://matplotlib_inline.backend_inline")
    old = dict(os.environ)
    os.environ.update(env)    # the kernel inherits this process's environment
    try:
        start = time.perf_counter()
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(SOURCES)}}).execute()
        nb.metadata["kerascnn"]["seconds"] = round(time.perf_counter() - start, 1)
    finally:
        os.environ.clear()
        os.environ.update(old)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}.ipynb"
    tmp = target.with_suffix(".ipynb.partial")
    nbformat.write(nb, tmp)
    tmp.replace(target)
    return target


if __name__ == "__main__":
    for n in sys.argv[1:] or names():
        t = time.perf_counter()
        print(f"{n}: {execute(n)} ({time.perf_counter() - t:.0f} s)")
