"""Argument errors arrive before TensorFlow loads (issue 16): each command's bad argument is
answered in-process without importing tensorflow, and in a fresh process in well under a
second (bound 3 s: TensorFlow's import alone takes 5-20 s, so a regression cannot pass)."""
import json
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import run_kerascnn

USAGE = "Usage: kerascnn"

# (args, exit code, the exact `Error:` line, the usage header it carries or None)
CASES = [
    (["train", "convnet", "--epochs", "0"], 2,
     "Error: Invalid value for '--epochs': 0 is not in the range 1<=x<=100000.", "Usage: kerascnn train"),
    (["train", "convnet", "--data", "no/such.npz"], 2,
     "Error: Invalid value for '--data': Path 'no/such.npz' does not exist.", "Usage: kerascnn train"),
    (["train", "nosuchnet"], 2, "Error: unknown model 'nosuchnet'; run `kerascnn list` for the zoo", None),
    (["evaluate", "runs/nonexistent"], 2, "Error: runs/nonexistent: no such file or directory", None),
    (["evaluate", "convnet", "--batch-size", "0"], 2,
     "Error: Invalid value for '--batch-size': 0 is not in the range 1<=x<=100000.", "Usage: kerascnn evaluate"),
    (["predict", "missing.keras", "img.png"], 2, "Error: missing.keras: no such file or directory", None),
    (["predict", "convnet", "img.png", "--class-names", "a,b,a"], 2, "Error: --class-names: 'a' appears twice", None),
    (["export", "convnet"], 2, "Error: saved_models/convnet already exists; pass --force to replace it", None),
    (["bench", "xyzzy"], 2, "Error: unknown model 'xyzzy'; run `kerascnn list` for the zoo", None),
    (["summary", "conv5-10s1p0", "--input-shape", "2,2,1"], 2,
     "Error: conv2d: spatial size collapses: (2 - 5 + 2*0)/1 + 1 = -2 <= 0 (input 2, kernel 5, stride 1); "
     "the smallest input that works is 5x5x1", None),
    (["visualize", "filters", "runs/x", "--out", "f.png"], 2, "Error: runs/x: no such file or directory", None),
]


def _workdir(tmp_path):
    (tmp_path / "saved_models" / "convnet").mkdir(parents=True)
    (tmp_path / "img.png").write_bytes(b"")
    return tmp_path


def test_bad_arguments_never_import_tensorflow(tmp_path):
    """In one fresh interpreter, through click's CliRunner: exact messages, exit codes, and
    `tensorflow`/`keras` absent from sys.modules after every case."""
    code = textwrap.dedent(f"""
        import json, sys
        from click.testing import CliRunner
        from kerascnn.cli import cli
        out = []
        for args in {[c[0] for c in CASES]!r}:
            r = CliRunner().invoke(cli, args, prog_name="kerascnn")
            out.append([r.exit_code, r.output, sorted(m for m in ("tensorflow", "keras") if m in sys.modules)])
        print(json.dumps(out))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=_workdir(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    for (args, code_, line, usage), (exit_code, output, loaded) in zip(CASES, json.loads(proc.stdout)):
        assert loaded == [], (args, loaded)
        assert exit_code == code_, (args, output)
        errors = [l for l in output.splitlines() if l.startswith("Error:")]
        assert errors == [line], (args, output)
        if usage is None:  # a domain problem: one line, no usage header at all
            assert output.strip() == line, (args, output)
        else:  # a real usage mistake: the subcommand's usage, never the group's
            assert output.startswith(usage + " ") and "COMMAND [ARGS]" not in output, (args, output)


@pytest.mark.parametrize("args", [c[0] for c in CASES], ids=[" ".join(c[0][:2]) for c in CASES])
def test_bad_argument_returns_in_well_under_a_second(tmp_path, args):
    start = time.monotonic()
    r = run_kerascnn(*args, cwd=_workdir(tmp_path), timeout=60)
    elapsed = time.monotonic() - start
    assert r.returncode == 2 and r.stderr.count("Error:") == 1, r.stderr
    assert elapsed < 3.0, f"{args}: {elapsed:.1f} s (TensorFlow loaded?)"


def test_missing_pydot_is_reported_before_tensorflow(tmp_path):
    code = textwrap.dedent(f"""
        import json, shutil, sys
        shutil.which = lambda name, *a, **k: None  # no Graphviz `dot` on PATH
        from click.testing import CliRunner
        from kerascnn.cli import cli
        r = CliRunner().invoke(cli, ["visualize", "architecture", "convnet", "--out", {str(tmp_path / "a.png")!r}])
        print(json.dumps([r.exit_code, r.output, "tensorflow" in sys.modules]))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    exit_code, output, loaded = json.loads(proc.stdout)
    assert exit_code == 2 and not loaded and not (tmp_path / "a.png").exists()
    assert output.strip() == ("Error: architecture diagrams need pydot and Graphviz: pip install pydot; "
                              "apt-get install graphviz (or brew install graphviz)")


def test_one_line_finds_the_cause_inside_a_tensorflow_graph_execution_error():
    from kerascnn.cli import one_line

    msg = ("Graph execution error:\n\nDetected at node decode_image/DecodeImage defined at (most recent call last):\n"
           "<stack traces unavailable>\nError in user-defined function passed to MapDataset:1 transformation with "
           "iterator: Iterator::Root::ParallelMapV2: Unknown image file format. One of JPEG, PNG required.\n"
           "\t [[{{node decode_image/DecodeImage}}]]\n\t [[IteratorGetNext]] [Op:__inference_f_17]")
    assert one_line(ValueError(msg)) == "while reading the data: Unknown image file format. One of JPEG, PNG required."
    assert one_line(ValueError("first line\nsecond")) == "first line"
