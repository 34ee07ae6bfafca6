"""Reliability promises that need no training: atomic writes, run-directory claims under
concurrency, safe-mode loading, the memory guard, and CLI fuzzing with hostile arguments."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kerascnn import fsutil, guard
from kerascnn.errors import MemoryGuardError
from kerascnn.registry import get_entry


# ----------------------------------------------------------------------------- atomic writes
def test_atomic_path_keeps_the_old_file_when_the_writer_dies(tmp_path):
    target = tmp_path / "last.keras"
    target.write_bytes(b"old complete model")
    with pytest.raises(RuntimeError):
        with fsutil.atomic_path(target) as tmp:
            assert tmp.suffix == ".keras" and tmp.parent == tmp_path
            tmp.write_bytes(b"half")
            raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old complete model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.keras"]


def test_commit_dir_never_exposes_a_partial_tree(tmp_path):
    target = tmp_path / "export"
    stage = fsutil.partial_dir(target)
    (stage / "saved_model.pb").write_text("v1")
    fsutil.commit_dir(stage, target)
    stage2 = fsutil.partial_dir(target)
    (stage2 / "saved_model.pb").write_text("v2")
    with pytest.raises(FileExistsError):
        fsutil.commit_dir(stage2, target)  # no --force: the old export stays
    assert (target / "saved_model.pb").read_text() == "v1"
    fsutil.commit_dir(stage2, target, force=True)
    assert (target / "saved_model.pb").read_text() == "v2"
    mine = fsutil.partial_dir(target)  # this (live) process's staging: never swept
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    leftover = tmp_path / f".export.partial-{dead}-0badc0de"  # an export killed before its rename
    leftover.mkdir()
    assert fsutil.sweep_partials(tmp_path) == [leftover]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["export", mine.name])


def test_atomic_write_survives_sigkill_of_the_writer(tmp_path):
    """A process killed while writing leaves the previous file intact (R3)."""
    target = tmp_path / "metrics.json"
    fsutil.atomic_write_json(target, {"epoch": 1})
    code = textwrap.dedent(f"""
        import os, signal
        from kerascnn import fsutil
        with fsutil.atomic_path({str(target)!r}) as tmp:
            tmp.write_text('{{"epoch": 2, "partial')
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", code])
    assert proc.returncode == -9
    assert json.loads(target.read_text()) == {"epoch": 1}


# ----------------------------------------------------------------------------- concurrency
def test_two_processes_claiming_run_dirs_in_the_same_second_never_share(tmp_path):
    code = textwrap.dedent(f"""
        import datetime, sys
        from kerascnn.fsutil import make_run_dir
        now = datetime.datetime(2026, 11, 22, 12, 0, 0)   # frozen: every call in the same second
        for _ in range(50):
            print(make_run_dir({str(tmp_path)!r}, "convnet", now=now).name)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    names = [line for p in procs for line in p.communicate()[0].split()]
    assert all(p.returncode == 0 for p in procs)
    assert len(names) == 100 and len(set(names)) == 100
    assert len(list(tmp_path.iterdir())) == 100


# ----------------------------------------------------------------------------- untrusted models
def test_lambda_models_are_refused_unless_unsafe(tmp_path):
    import keras

    from kerascnn.errors import ConfigError
    from kerascnn.runs import load_keras_model

    model = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda x: x * 2.0), keras.layers.Dense(2)])
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(ConfigError, match="safe mode refuses"):
        load_keras_model(path)
    assert load_keras_model(path, unsafe=True).count_params() == 10


def test_corrupt_model_file_is_a_one_line_error(tmp_path):
    from kerascnn.errors import DataError
    from kerascnn.runs import load_keras_model

    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match="not a loadable Keras model") as e:
        load_keras_model(bad)
    assert "\n" not in str(e.value)


# ----------------------------------------------------------------------------- memory guard
def test_memory_guard_refuses_before_allocation(monkeypatch):
    report = get_entry("vgg16").analyze()
    need = guard.training_bytes(report, 64)
    assert 8 * 2**30 < need < 12 * 2**30        # 138 M params x 4 copies + activations of 64 images
    monkeypatch.setenv("KERASCNN_MEMORY_LIMIT", "4G")
    with pytest.raises(MemoryGuardError, match=r"vgg16 at 224x224x3 with batch 64 needs about .* GiB"):
        guard.check(report, 64, what="vgg16")
    monkeypatch.setenv("KERASCNN_MEMORY_LIMIT", "64G")
    assert guard.check(report, 64) == need


def test_summary_refuses_a_model_too_large_to_build(invoke):
    r = invoke("summary", "mlp", "--input-shape", "20000,20000,3")
    assert r.exit_code == 2 and "more than the" in r.output and "Traceback" not in r.output
    r = invoke("summary", "mlp", "--input-shape", "20000,20000,3", "--no-keras", "--format", "json")
    assert r.exit_code == 2


# ----------------------------------------------------------------------------- CLI fuzzing
MODELS = ["convnet", "lenet5", "alexnet", "vgg16", "resnet18", "googlenet", "nin", "mlp", "nosuchnet", ""]
INTS = st.one_of(st.integers(-5, 5), st.integers(-10**12, 10**12), st.sampled_from([0, 1, 2, 3, 7, 99999, 10**9]))
WORDS = st.one_of(st.text(min_size=0, max_size=12), st.sampled_from(
    ["nan", "-1", "1e9", "x", ",,", "3,3", "1,1,1", "0,0,0", "28,28,1", "7,7,1", "abc", "../../etc/passwd"]))
SPEC = st.lists(st.one_of(
    st.builds(lambda f, k, s, p: f"conv{f}-{k}s{s}p{p}", INTS.map(abs), INTS.map(abs), INTS.map(abs), INTS.map(abs)),
    st.builds(lambda f, s: f"maxpool{f}s{s}", INTS.map(abs), INTS.map(abs)),
    st.sampled_from(["fc10", "gap", "flatten", "bn", "relu", "dropout0.5", "3*conv3-8p1", "conv3-8q", "pool", "fc-1"]),
), min_size=1, max_size=5).map(", ".join)
SHAPE = st.one_of(st.tuples(INTS, INTS, INTS).map(lambda t: ",".join(map(str, t))), WORDS)

ARGS = st.one_of(
    st.tuples(st.just("summary"), st.one_of(st.sampled_from(MODELS), SPEC, WORDS),
              st.sampled_from(["--input-shape", "--classes", "-o", "--depth", "--format"]),
              st.one_of(SHAPE, INTS.map(str), WORDS)).map(list),
    st.tuples(st.just("summary"), SPEC, st.just("--input-shape"), SHAPE).map(list),
    st.tuples(st.just("list"), st.one_of(WORDS, st.sampled_from(["--format", "vgg*", "--bogus"]))).map(list),
    st.lists(WORDS, min_size=0, max_size=4),
)

FUZZ_CASES = {"n": 0}


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(args=ARGS)
def test_fuzz_cli_never_shows_a_traceback(args, tmp_path_factory):
    from click.testing import CliRunner

    from kerascnn.cli import cli

    if args and args[0] == "summary":
        args = args + ["--no-keras"]  # arithmetic only: thousands of cases stay fast and TF-free
    runner = CliRunner()
    with runner.isolated_filesystem(temp_dir=tmp_path_factory.mktemp("fuzz")) as cwd:
        result = runner.invoke(cli, args)
        assert os.listdir(cwd) == [], f"{args} wrote files"
    FUZZ_CASES["n"] += 1
    out = result.output
    assert "Traceback" not in out, (args, out)
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, repr(result.exception))
    assert result.exit_code in (0, 1, 2), (args, result.exit_code)
    if result.exit_code != 0 and args and "--help" not in args:
        assert len([l for l in out.splitlines() if l.startswith("Error")]) == 1, (args, out)


def test_fuzz_case_count_reported():
    # runs after the fuzz test in file order; the count goes into the test log
    print(f"CLI fuzz cases run: {FUZZ_CASES['n']}")
    assert FUZZ_CASES["n"] >= 400 or FUZZ_CASES["n"] == 0


# ----------------------------------------------------------------------------- disk full, torn state (R4, R2)
def _limited_to(nbytes):
    """preexec_fn: files may not grow beyond ``nbytes`` (writes fail with EFBIG, as on a full disk)."""
    import resource
    import signal

    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # stays ignored across exec: write() returns EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))

    return apply


def _kerascnn_limited(args, nbytes, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "kerascnn", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, preexec_fn=_limited_to(nbytes), timeout=600)


def _one_error_line(stderr, *fragments):
    errors = [l for l in stderr.splitlines() if l.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr[-2000:]
    for f in fragments:
        assert f in errors[0], errors[0]
    return errors[0]


@pytest.mark.slow
def test_full_disk_during_export_and_training_keeps_what_was_there(trained_run, tmp_path):
    """R4: with files capped at 64 KiB (a full disk), export and train end with one line naming the
    file; the previous export, models, history and training state are untouched and still load."""
    import shutil

    import numpy as np

    from conftest import kerascnn_in_process

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    target = tmp_path / "export"
    assert kerascnn_in_process("export", run, "--out", target).returncode == 0
    before = {p: p.read_bytes() for p in [target / "saved_model.pb", run / "last.keras", run / "history.csv",
                                          run / "backup" / "state.npz"]}

    r = _kerascnn_limited(["export", run, "--out", target, "--force"], 64 * 1024, tmp_path)
    assert r.returncode == 1
    _one_error_line(r.stderr, f"cannot write {target}", "file too large", "previous version")
    r = _kerascnn_limited(["train", "--resume", run, "--epochs", "5", "-q"], 64 * 1024, tmp_path)
    assert r.returncode == 1
    _one_error_line(r.stderr, "cannot write", "last.keras", "file too large")

    assert all(p.read_bytes() == b for p, b in before.items())
    assert not [p for p in tmp_path.rglob("*") if ".partial-" in p.name]  # nothing half-written left
    check = kerascnn_in_process("evaluate", run, "--which", "last", "--format", "json")
    assert check.returncode == 0, check.stderr[-1500:]
    with np.load(run / "backup" / "state.npz") as z:
        assert json.loads(bytes(z["meta"]).decode())["epoch"] == 2   # epochs 1-3 done, resumable


def test_a_damaged_training_state_is_refused_in_one_line(trained_run, tmp_path):
    """R2: a torn backup/state.npz never silently restarts from epoch 1."""
    import shutil

    from conftest import kerascnn_in_process

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    state = run / "backup" / "state.npz"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    r = kerascnn_in_process("train", "--resume", run, "--epochs", "5", "-q")
    assert r.returncode == 1
    _one_error_line(r.stderr, "state.npz", "cannot read the training state")
    assert (run / "history.csv").read_text().count("\n") == 4   # header + the 3 epochs, nothing appended


# ----------------------------------------------------------------------------- MirroredStrategy (R6)
@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus_equals_one_device(tmp_path):
    """R6: the same loop under MirroredStrategy (2 replicas, global batch split 64 + 64, gradients
    all-reduced) trains the same model as the default strategy, up to float32 round-off.

    The two strategies sum the gradients in different orders, so the weights may differ by
    round-off, and how much depends on the CPU's kernels (AVX-512 vs AVX2 FMA blocking) and grows
    with every epoch. One epoch, and a bound from the optimizer rather than from one CPU: Adam moves
    a weight by at most about lr per step, so after S steps the runs can differ by at most S * lr;
    round-off perturbs each update by a relative ~sqrt(n) * 2**-24 (n <= 128 * 26 * 26 summed
    terms: ~5e-5), far below the 1% allowed here, while a wrong all-reduce (a replica's own
    gradient, a sum instead of a mean) perturbs it by O(1). Measured: 2.5e-7 (AVX-512), 4.5e-7
    (ONEDNN_MAX_CPU_ISA=AVX2) against the bound 1e-4."""
    import csv
    import json

    import keras
    import numpy as np

    from conftest import kerascnn_in_process, run_kerascnn

    common = ["train", "convnet", "--epochs", "1", "--precision", "float32", "--seed", "1", "-q"]
    mirrored = run_kerascnn(*common, "--strategy", "mirrored", "--run-dir", tmp_path / "m",
                            env={"KERASCNN_LOGICAL_CPUS": "2"})
    assert mirrored.returncode == 0, mirrored.stderr[-2000:]
    assert "strategy mirrored (MirroredStrategy), 2 replica(s) on /device:CPU:0, /device:CPU:1" in mirrored.stdout
    single = kerascnn_in_process(*common, "--strategy", "default", "--run-dir", tmp_path / "d")
    assert single.returncode == 0, single.stderr[-2000:]
    cfg = json.loads((tmp_path / "d" / "config.json").read_text())
    steps = cfg["train_images"] // cfg["batch_size"]
    assert cfg["optimizer"] == "adam" and steps == 10  # 1294 digits, batch 128
    bound = 0.01 * steps * cfg["lr"]
    losses = [[float(r["loss"]) for r in csv.DictReader(open(tmp_path / d / "history.csv"))] for d in ("m", "d")]
    assert np.allclose(losses[0], losses[1], rtol=1e-3, atol=0)  # a sum instead of a mean would be 2x
    a = keras.models.load_model(tmp_path / "m" / "last.keras").get_weights()
    b = keras.models.load_model(tmp_path / "d" / "last.keras").get_weights()
    assert max(float(np.max(np.abs(x - y))) for x, y in zip(a, b)) < bound
