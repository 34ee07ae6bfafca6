"""MkDocs hooks: files from outside docs/ that the site shows.

* ``benchmarks/RESULTS.md`` (the benchmark log, kept beside its scripts) is served as
  ``benchmarks/RESULTS.md``, so the guides link to it and ``--strict`` checks those links.
* The lecture notebooks (``notebooks/lecture*.py``, jupytext "percent" files, the only copies in
  git) are served as ``notebooks/NAME.ipynb`` and rendered by mkdocs-jupyter without executing
  them: the executed copy ``build/notebooks/NAME.ipynb`` that ``python notebooks/run.py`` (or the
  test suite) wrote, when it was made from the current source; otherwise the source converted
  without outputs (and the build log says so).
"""
import hashlib
import logging
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
EXTRA = {"benchmarks/RESULTS.md": ROOT / "benchmarks" / "RESULTS.md"}
NOTEBOOKS = ROOT / "notebooks"
EXECUTED = ROOT / "build" / "notebooks"
STAGE = ROOT / "build" / "docs-notebooks"    # what the site renders: STAGE/notebooks/NAME.ipynb
log = logging.getLogger("mkdocs.hooks.kerascnn")


def stage_notebook(source: Path) -> str:
    """Put the .ipynb the site shows for ``source`` at STAGE/notebooks/: the executed copy if it
    was made from the current source, else the source converted without outputs."""
    import jupytext
    import nbformat

    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    executed = EXECUTED / f"{source.stem}.ipynb"
    nb = nbformat.read(executed, as_version=4) if executed.is_file() else None
    if nb is None or nb.metadata.get("kerascnn", {}).get("source_sha256") != digest:
        log.info("notebook %s is shown without outputs (run: python notebooks/run.py %s)", source.stem, source.stem)
        nb = jupytext.read(source)
    target = STAGE / "notebooks" / f"{source.stem}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)
    return f"notebooks/{source.stem}.ipynb"


@event_priority(100)   # before mkdocs-jupyter's on_files wraps the notebooks
def on_files(files, config):
    for uri, path in EXTRA.items():
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    for source in sorted(NOTEBOOKS.glob("lecture*.py")):
        # a real File under STAGE (not File.generated): mkdocs-jupyter reads abs_src_path through its wrapper
        files.append(File(stage_notebook(source), str(STAGE), config.site_dir, config.use_directory_urls))
    return files
