"""Every shell command shown in README.md and docs/*.md runs as written, in a sandbox.

The commands are read from the Markdown itself: every line of a ```bash block, every ``$ COMMAND``
line of an output block (with the output that follows it) and every inline `kerascnn ...` span
that is a whole command (no placeholder such as RUN, FILE or ``…``). Each documentation file gets a
fresh copy of one sandbox directory in which the files the commands name exist as tiny stand-ins:
``../shared/data/mnist.npz`` (80 random 28x28 images), ``mnist.npz``, ``fashion_mnist.npz``,
``runs/quickstart`` (a 1-epoch run on the bundled digits), ``cat.jpg``, ``photos/``,
``imagenet_val/``, ``model.keras`` (also as ``ResNet50.keras``), ``docs/samples/``, empty weight files (and, after a parse-only
``train --run-dir D``, a copy of the stand-in run at D). The commands then run
in the order the page shows them, in-process (click's test runner), so one TensorFlow import
serves them all; ``saved_model_cli`` runs in a shell.

A command that cannot run here carries a marker next to it in the Markdown, an HTML comment:

* ``<!-- parse-only "TEXT": REASON -->``: the page's command TEXT (or, when no command is exactly
  TEXT, those containing it) is parsed by the CLI and checked up to the point where TensorFlow
  would load (model names, ``-o`` options, paths, option values: everything a command checks
  before its work), not run; a command that is not kerascnn's is not run;
* ``<!-- exit 2 "TEXT" -->``: the command is documented to fail with one ``Error:`` line;
* ``<!-- output varies "TEXT": REASON -->``: its shown output is an example, not compared.

Shown output is compared exactly (``$ kerascnn summary ...`` blocks). The three quick-start
commands are run as written by ``tests/test_readme_quickstart.py`` (30 epochs) and skipped here.
Every ```python example runs too, and prints what the output block after it shows.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from images import random_folder

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r'<!--\s*(parse-only|exit (\d+)|output varies)\s+"([^"]+)"\s*(?::\s*(.*?))?\s*-->', re.S)
ENV = re.compile(r"^[A-Z_][A-Z0-9_]*=")
PLACEHOLDER = re.compile(r"\b[A-Z][A-Z_]{1,}\b|…|\[")
CLI = ("kerascnn", "python cli.py")
# Commands that are not kerascnn's and are run elsewhere, as written.
ELSEWHERE = {
    'pip install -e ".[test]"': ".ci/run installs exactly this",
    "pytest": ".ci/run runs exactly this",
    "mkdocs build --strict": "tests/test_docs_site.py builds the site this way",
    "mkdocs serve": "tests/test_docs_site.py builds the same site",
    "python notebooks/run.py": "tests/test_docs_site.py executes the same notebooks (notebooks/run.py)",
    'pip install -e ".[jax]"': "the test extra that .ci/run installs holds the same jax[cpu]",
    "python3.11 -m venv .venv": ".ci/run",
    "source .venv/bin/activate": ".ci/run",
}


@dataclass
class Command:
    page: str
    line: int
    text: str               # as written (continuations joined, trailing comment removed)
    expected: str | None    # the output shown after a `$ COMMAND` line
    mark: str | None = None
    reason: str = ""
    exit_code: int = 0
    compare: bool = True

    @property
    def is_cli(self) -> bool:
        words = self.words
        return bool(words) and (words[0] == "kerascnn" or words[:2] == ["python", "cli.py"])

    @property
    def words(self) -> list:
        return [w for w in shlex.split(self.text) if not ENV.match(w)]

    @property
    def env(self) -> dict:
        out = {}
        for w in shlex.split(self.text):
            if not ENV.match(w):
                break
            k, _, v = w.partition("=")
            out[k] = v
        return out

    def __str__(self):
        return f"{self.page}:{self.line}: {self.text}"


def _strip_comment(line: str) -> str:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=False)
    lexer.whitespace_split, lexer.commenters = True, "#"
    try:
        words = list(lexer)
    except ValueError:
        return line.strip()
    if not words:
        return ""
    # keep the text as written up to the comment
    cut = re.search(r"\s#\s", line)
    return (line[:cut.start()] if cut else line).strip()


def commands_of(page: Path) -> list:
    text = page.read_text()
    rel = page.relative_to(ROOT).as_posix()
    found = []
    line_of = lambda pos: text.count("\n", 0, pos) + 1  # noqa: E731
    for m in re.finditer(r"^```([a-z]*)\n(.*?)^```", text, re.S | re.M):
        lang, body, start = m.group(1), m.group(2), line_of(m.start(2))
        lines = body.split("\n")
        if lang in ("bash", "sh", "shell"):
            i = 0
            while i < len(lines):
                first, line = i, lines[i]
                while line.endswith("\\") and i + 1 < len(lines):
                    i += 1
                    line = line[:-1] + " " + lines[i].strip()
                line = _strip_comment(line)
                if line:
                    found.append(Command(rel, start + first, line, None))
                i += 1
        elif lang == "" and any(l.startswith("$ ") for l in lines):
            for chunk in re.split(r"^\$ ", body, flags=re.M)[1:]:
                command, _, output = chunk.partition("\n")
                found.append(Command(rel, start + body[:body.index(chunk)].count("\n"), command.strip(), output))
    prose = re.sub(r"^```.*?^```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S | re.M)
    for m in re.finditer(r"`((?:kerascnn|python cli\.py) [^`]+)`", prose):
        cmd = " ".join(m.group(1).split())
        if not PLACEHOLDER.search(cmd) and len(cmd.split()) > 2 - cmd.startswith("kerascnn list"):
            found.append(Command(rel, line_of(m.start()), cmd, None))
    found.sort(key=lambda c: c.line)
    return found


def marks_of(page: Path) -> list:
    return [(m.group(1), m.group(2), m.group(3), " ".join((m.group(4) or "").split()))
            for m in MARKER.finditer(page.read_text())]


def quickstart() -> list:
    block = (ROOT / "README.md").read_text().split("<!-- quickstart -->", 2)[1]
    return [l.strip() for l in re.findall(r"^kerascnn .*$", block, re.M)]


def planned(page: Path) -> list:
    """The page's commands with their markers applied; a marker that matches nothing is an error."""
    cmds = commands_of(page)
    for kind, code, needle, reason in marks_of(page):
        hits = [c for c in cmds if c.text == needle] or [c for c in cmds if needle in c.text]
        assert hits, f"{page.name}: marker {kind} {needle!r} matches no command"
        for c in hits:
            if kind == "parse-only":
                c.mark, c.reason = "parse-only", reason
            elif kind == "output varies":
                c.compare, c.reason = False, reason
            else:
                c.exit_code = int(code)
    for c in cmds:
        if c.text in quickstart():
            c.mark, c.reason = "elsewhere", "run as written by tests/test_readme_quickstart.py"
        elif not c.is_cli and c.mark is None and c.words[:1] != ["saved_model_cli"]:
            assert c.text in ELSEWHERE, f"{c}: not a kerascnn command; mark it or add it to ELSEWHERE"
            c.mark, c.reason = "elsewhere", ELSEWHERE[c.text]
        if c.expected is not None and c.expected.startswith("Error:"):
            c.exit_code = c.exit_code or 2
    return cmds


# ----------------------------------------------------------------------------------- the sandbox
def _npz(path: Path, n_train=80, n_test=20, seed=0):
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), y_train=np.arange(n_train) % 10,
             x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), y_test=np.arange(n_test) % 10)


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory):
    """The template: <root>/work is the working directory, <root>/shared/data holds the data."""
    root = tmp_path_factory.mktemp("docs-sandbox")
    work = root / "work"
    work.mkdir()
    _npz(root / "shared" / "data" / "mnist.npz")
    _npz(work / "mnist.npz", seed=1)
    _npz(work / "fashion_mnist.npz", seed=2)
    for folder in ("photos", "imagenet_val"):     # 2 x 3 random 32x32 JPEGs, the same in both
        random_folder(work / folder, ("cats", "dogs"), 3, (32, 32), "RGB", "jpg", seed=1)
    from PIL import Image

    Image.fromarray(np.full((40, 48, 3), 128, np.uint8)).save(work / "cat.jpg")
    shutil.copytree(ROOT / "docs" / "samples", work / "docs" / "samples")
    for name in ("resnet18.safetensors", "alexnet.safetensors", "googlenet-1378be20.pth",
                 *(f"home/.keras/models/{m}_weights_tf_dim_ordering_tf_kernels{top}.h5"
                   for m in ("vgg16", "vgg19", "resnet50") for top in ("", "_notop"))):
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(b"")   # parse-only commands check that the file exists
    import kerascnn

    model = kerascnn.build("lenet5")
    model.save(work / "model.keras")
    (work / "path" / "to").mkdir(parents=True)
    shutil.copy(work / "model.keras", work / "path" / "to" / "model.keras")
    shutil.copy(work / "model.keras", work / "ResNet50.keras")   # stands in for the 98 MB keras.applications file
    r = _run_cli(["train", "convnet", "--epochs", "1", "--run-dir", "runs/quickstart", "-q"], work)
    assert r.exit_code == 0, r.output
    return root


def _run_cli(args, cwd, env=None):
    from click.testing import CliRunner

    from kerascnn.cli import cli

    old = os.getcwd()
    env = {"KERAS_HOME": str(Path(cwd) / "home" / ".keras"), **(env or {})}   # the stand-in download cache
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        os.chdir(cwd)
        return CliRunner().invoke(cli, args, catch_exceptions=False)
    finally:
        os.chdir(old)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _ReachedTensorFlow(BaseException):
    """Raised where a parse-only command would import TensorFlow: everything before it was checked."""


def _stop(*_a, **_k):
    raise _ReachedTensorFlow


def _argv(c: Command, work: Path) -> list:
    words = c.words
    words = words[1:] if words[0] == "kerascnn" else words[2:]
    return [str(work / "home" / w[2:]) if w.startswith("~/") else w for w in words]


def _parse_only(c: Command, work: Path, monkeypatch):
    import kerascnn.commands.common as common
    import kerascnn.engines as engines
    import kerascnn.tfquiet as tfquiet

    with monkeypatch.context() as m:
        m.setattr(common, "load_tensorflow", _stop)
        m.setattr(tfquiet, "import_tensorflow_if_installed", _stop)   # the Python API's way in
        m.setattr(engines, "use_backend", _stop)   # the backend is chosen where TensorFlow/JAX would load
        try:
            r = _run_cli(_argv(c, work), work, c.env)
        except _ReachedTensorFlow:
            return
    assert r.exit_code == c.exit_code, f"{c}\n{r.output}"


def _stand_in_run(c: Command, work: Path):
    """A parse-only `train ... --run-dir D` leaves a stand-in run at D (a copy of the 1-epoch
    runs/quickstart), so the page's next commands, which read D, run."""
    argv = _argv(c, work)
    if argv[:1] == ["train"] and "--run-dir" in argv:
        target = work / argv[argv.index("--run-dir") + 1]
        if not target.exists() and target.is_relative_to(work):
            shutil.copytree(work / "runs" / "quickstart", target)


def _run(c: Command, work: Path):
    if c.is_cli:
        r = _run_cli(_argv(c, work), work, c.env)
        code, output = r.exit_code, r.output
    else:
        bin_dir = str(Path(sys.executable).parent)
        p = subprocess.run(["bash", "-c", c.text], cwd=work, capture_output=True, text=True, timeout=300,
                           env=dict(os.environ, PATH=bin_dir + os.pathsep + os.environ["PATH"], **c.env))
        code, output = p.returncode, p.stdout + p.stderr
    assert code == c.exit_code, f"{c}\nexit {code}\n{output[-3000:]}"
    assert "Traceback" not in output, f"{c}\n{output[-3000:]}"
    if c.exit_code:
        assert output.strip().startswith("Error:") and output.count("Error:") == 1, f"{c}\n{output}"
    if c.expected is not None and c.compare:
        assert output.rstrip("\n") == c.expected.rstrip("\n"), f"{c}: output differs from the page"


# ------------------------------------------------------------------------------ Python examples
def python_examples() -> list:
    """(page:line, code, shown output or None) for every ```python block; the output is the plain
    ``` block right after it, when there is one."""
    out = []
    for page in PAGES:
        text = page.read_text()
        for m in re.finditer(r"^```python\n(.*?)^```\n\s*(?:^```\n(.*?)^```)?", text, re.S | re.M):
            if text.rfind("<!-- python-api -->", 0, m.start()) > text.rfind("<!-- /python-api -->", 0, m.start()):
                continue   # the README's workflow example: tests/test_api.py runs it (and checks its results)
            out.append((f"{page.relative_to(ROOT).as_posix()}:{text.count(chr(10), 0, m.start()) + 1}",
                        m.group(1), m.group(2)))
    return out


@pytest.mark.parametrize("where,code,shown", python_examples(), ids=[w for w, _, _ in python_examples()])
def test_python_example_runs_and_prints_what_the_page_shows(where, code, shown, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # whatever an example writes lands outside the checkout
    exec(compile(code, where, "exec"), {"__name__": "__docs__"})
    printed = capsys.readouterr().out
    if shown is not None:
        assert printed.rstrip("\n") == shown.rstrip("\n"), f"{where}: output differs from the page"


# ----------------------------------------------------------------------------------------- tests
def test_every_shown_command_is_found_and_classified():
    """The extraction sees the pages' commands (a sample of known ones) and every non-kerascnn
    command is either run elsewhere or marked."""
    every = {c.text: c for page in PAGES for c in planned(page)}
    for text in ("kerascnn summary conv5-10s1p2 --input-shape 32,32,3 --no-keras",
                 "kerascnn export runs/quickstart --out saved_models/digits",
                 "kerascnn summary resnet18 --strict",
                 "kerascnn train convnet --data mnist.npz --epochs 12"):
        assert text in every, text
    assert len(every) >= 60
    assert all(c.reason for c in every.values() if c.mark), [str(c) for c in every.values() if c.mark and not c.reason]


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_commands_run_as_written(page, sandbox, tmp_path, monkeypatch):
    cmds = planned(page)
    if not any(c.mark != "elsewhere" for c in cmds):
        pytest.skip("no commands to run on this page")
    root = tmp_path / "sandbox"
    shutil.copytree(sandbox, root, symlinks=True)
    work = root / "work"
    for c in cmds:
        if c.mark == "elsewhere":
            continue
        if c.mark == "parse-only":
            if c.is_cli:
                _parse_only(c, work, monkeypatch)
                _stand_in_run(c, work)
        else:
            _run(c, work)
