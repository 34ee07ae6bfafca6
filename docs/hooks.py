"""MkDocs hooks: files from outside docs/ that the site shows.

* ``benchmarks/RESULTS.md`` (the benchmark log, kept beside its scripts) is served as
  ``benchmarks/RESULTS.md``, so the guides link to it and ``--strict`` checks those links.
"""
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
EXTRA = {"benchmarks/RESULTS.md": ROOT / "benchmarks" / "RESULTS.md"}


def on_files(files, config):
    for uri, path in EXTRA.items():
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files
