"""`kerascnn train --backend jax --stream on`: the JAX engine trains from the TensorFlow engine's
file stream (same tf.data pipeline, same (seed, epoch) order), resumes bitwise after SIGKILL, and
is refused in one line where TensorFlow is missing."""
import csv
import importlib.util
import json
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import kerascnn_in_process, kill_after_epoch, load_weights, read_history, run_kerascnn, run_without_tensorflow
from images import digits_folder

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                                 reason="jax is not installed (pip install -e '.[jax]' or 'jax[cpu]')")]

# 72 digits in 3 class folders (a few RGBA / palette / 16-bit / 10x10 files): 52 train, 6 val, 14 test
COMMON = ["train", "convnet", "--epochs", "2", "--batch-size", "8", "--seed", "4", "--augment",
          "--stream", "on", "-q"]
STEPS = 52 // 8


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """JAX streamed: uninterrupted, and SIGKILLed after its epoch-1 checkpoint; TF streamed."""
    root = tmp_path_factory.mktemp("jaxstream")
    data = digits_folder(root / "f", 3, 24, odd_modes=True)
    full = run_kerascnn(*COMMON, "--data", data, "--backend", "jax", "--run-dir", root / "full")
    assert full.returncode == 0, full.stderr[-2000:]
    cut = kill_after_epoch(1, *COMMON, "--data", data, "--backend", "jax", "--run-dir", root / "cut")
    assert cut == -signal.SIGKILL
    tf = kerascnn_in_process(*COMMON, "--data", data, "--backend", "tensorflow", "--run-dir", root / "tf")
    assert tf.returncode == 0, tf.stderr[-2000:]
    return root, full.stdout


def test_jax_trains_from_the_stream_with_the_tensorflow_history(runs):
    root, stdout = runs
    assert "52 train / 6 val streamed from disk | engine jax, 1 device(s)" in stdout
    jax_rows, tf_rows = read_history(root / "full"), read_history(root / "tf")
    with open(root / "full" / "history.csv") as fj, open(root / "tf" / "history.csv") as ft:
        assert next(csv.reader(fj)) == next(csv.reader(ft))              # the same columns
    assert [r["epoch"] for r in jax_rows] == [r["epoch"] for r in tf_rows] == ["1", "2"]
    for j, t in zip(jax_rows, tf_rows):
        # every epoch: STEPS full batches of 8 (accuracy = correct / 48), all 6 validation images
        correct, val_correct = float(j["accuracy"]) * STEPS * 8, float(j["val_accuracy"]) * 6
        assert abs(correct - round(correct)) < 1e-9 and abs(val_correct - round(val_correct)) < 1e-9
        # the same float32 schedule (cosine over 2 * STEPS steps) on both engines: equal to float32 rounding
        lr_j, lr_t = float(j["lr"]), float(t["lr"])
        assert abs(lr_j - lr_t) <= 2 * np.finfo(np.float32).eps * max(lr_j, lr_t)
    assert float(jax_rows[-1]["lr"]) == 0.0
    # it learns (3 classes, chance 1/3): loss and validation loss go down
    assert float(jax_rows[-1]["loss"]) < float(jax_rows[0]["loss"])
    assert float(jax_rows[-1]["val_loss"]) < float(jax_rows[0]["val_loss"])
    state = np.load(root / "full" / "backup" / "state.npz")
    assert float(state["o:iteration"]) == 2 * STEPS
    assert json.loads((root / "full" / "config.json").read_text())["engine"] == "jax"


def test_sigkill_and_resume_of_a_jax_stream_equals_an_uninterrupted_run(runs):
    root, _ = runs
    cut = root / "cut"
    assert [int(r["epoch"]) for r in read_history(cut)] == [1]
    resumed = run_kerascnn("train", "--resume", cut, "-q")      # the recorded engine (jax) and --stream on
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "from epoch 2 (epochs 1-1 done)" in resumed.stdout
    assert "streamed from disk | engine jax" in resumed.stdout
    assert [r["loss"] for r in read_history(cut)] == [r["loss"] for r in read_history(root / "full")]
    for a, b in zip(load_weights(root / "full" / "last.keras"), load_weights(cut / "last.keras")):
        assert np.array_equal(a, b)   # bitwise: same file order per (seed, epoch), state restored exactly


def test_jax_streaming_without_tensorflow_is_refused_in_one_line(tmp_path):
    data = digits_folder(tmp_path / "f", 3, 4)
    r = run_without_tensorflow(*COMMON, "--data", data, "--backend", "jax", "--run-dir", tmp_path / "run",
                               timeout=300)
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("Error:")]
    assert r.returncode == 2, r.stderr[-2000:]
    assert len(errors) == 1 and "reads the files through TensorFlow's tf.data" in errors[0]
    assert "--stream off" in errors[0] and "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists()          # refused before the run directory is made


def test_two_jax_processes_each_read_their_share_and_train_as_one_process_on_two_devices(tmp_path):
    """jax.distributed over two CPU processes (one device each): each reads and decodes only its
    share of every global batch (stream.worker_share by process), the shares are assembled into
    the global batch, and one epoch of plain SGD (augmented, dropout, BatchNorm) gives the weights
    of one process streaming the whole batch onto 2 host devices (the same mesh), within the
    bound of test_jax_engine.test_two_host_devices_equal_one_device (the cross-process all-reduce
    only reorders float32 sums); a wrongly assembled batch errs by about the distance travelled."""
    from test_jax_engine import EPS32, ROOT, run_processes, worker_env, worker_result

    folder = digits_folder(tmp_path / "f", 3, 24)
    worker = [sys.executable, str(ROOT / "tests" / "jax_worker.py"), "stream-train", str(folder)]
    one = subprocess.run(worker + ["0"], capture_output=True, text=True, env=worker_env(2), timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    one = worker_result(one.stdout)
    done = run_processes(worker + ["1"], [tmp_path / f"p{i}" for i in range(2)], timeout=600)
    for rc, _, err in done:
        assert rc == 0, err[-3000:]
    r0, r1 = sorted((worker_result(out) for _, out, _ in done), key=lambda r: r["process"])
    assert (one["processes"], one["replicas"], r0["processes"], r0["replicas"]) == (1, 2, 2, 2)
    steps, batch = one["steps"], one["batch"]
    assert steps == 57 // 16 and r0["steps"] == steps                       # 72 files, 15 held out for test
    # what each process decoded: only its half of every batch, each file once; together the epoch
    assert len(r0["reads"]) == len(r1["reads"]) == steps * batch // 2
    assert len(set(r0["reads"])) == len(r0["reads"]) and not set(r0["reads"]) & set(r1["reads"])
    assert sorted(r0["reads"] + r1["reads"]) == one["reads"] == one["epoch_files"]
    assert r0["sums"] == r1["sums"] and r0["sums"][2] == one["sums"][2] == steps * batch
    for a, b in zip(r0["w"], r1["w"]):
        assert np.array_equal(np.asarray(a), np.asarray(b))                # replicated in both processes
    travel = max(float(np.max(t)) for t in map(np.asarray, one["travel"]))
    tol = batch * 28 * 28 * EPS32 * travel
    assert tol < 0.01 * travel
    diffs = [float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(one["w"], r0["w"])]
    assert max(diffs) <= tol, (max(diffs), tol)


def test_start_up_line_names_the_jax_processes_sharing_the_stream():
    import numpy as np

    from kerascnn.data.source import ArraySource, StreamSource
    from kerascnn.data.stream import FileImages

    files = StreamSource(FileImages(["a.png", "b.png"], (8, 8), 1), np.zeros(2, np.int64))
    assert files.describe(2, "processes") == "streamed from disk, sharded by file over 2 processes"
    assert files.describe(1, "processes") == "streamed from disk"
    assert ArraySource(np.zeros((2, 8, 8, 1), np.float32)).describe(2, "processes") == "in memory"
