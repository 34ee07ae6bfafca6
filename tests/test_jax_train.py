"""`kerascnn train --backend jax`: the run directory's promises on the JAX engine, and a model
trained on JAX read back, evaluated and exported by TensorFlow (the test's own process)."""
import importlib.util
import json

import numpy as np
import pytest

from conftest import kerascnn_in_process, kill_inside_epoch, load_weights, read_history, run_kerascnn, run_without_tensorflow

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                                 reason="jax is not installed (pip install -e '.[jax]' or 'jax[cpu]')")]

COMMON = ["train", "lenet5", "-o", "variant=modern", "--backend", "jax", "--epochs", "2", "--seed", "11",
          "--batch-size", "64", "-q"]




@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An uninterrupted 2-epoch run, and one SIGKILLed inside epoch 2 (its state saved every 3 of the
    20 steps per epoch); returns them, the uninterrupted run's output and the cut's state meta."""
    root = tmp_path_factory.mktemp("jaxruns")
    full = run_kerascnn(*COMMON, "--run-dir", root / "full")
    assert full.returncode == 0, full.stderr[-2000:]
    # TensorFlow is still imported (Keras seeds it; tf.data): quietly, as on the TensorFlow engine
    assert "oneDNN custom operations" not in full.stderr and "cuda drivers" not in full.stderr, full.stderr[-800:]
    meta = kill_inside_epoch(*COMMON, "--save-every", "3", "--run-dir", root / "cut")
    return root / "full", root / "cut", full.stdout, meta


def test_jax_run_directory_holds_the_same_files(runs):
    full, _, stdout, _ = runs
    for name in ("config.json", "history.csv", "best.keras", "last.keras", "metrics.json", "backup/state.npz"):
        assert (full / name).is_file(), name
    cfg = json.loads((full / "config.json").read_text())
    assert cfg["engine"] == "jax" and cfg["versions"]["keras"]
    assert "engine jax, 1 device(s) on" in stdout and "weights sha256" in stdout
    rows = read_history(full)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[1]["loss"]) < float(rows[0]["loss"])
    assert float(rows[1]["val_accuracy"]) > 0.5        # chance 0.1; LeNet-5 (ReLU) learns digits in 2 epochs
    state = np.load(full / "backup" / "state.npz")
    assert state["w0"].shape == (5, 5, 1, 6) and float(state["o:iteration"]) == 2 * (1294 // 64)


def test_sigkill_inside_an_epoch_and_resume_on_jax_equals_an_uninterrupted_run(runs):
    full, cut, _, meta = runs
    assert meta and meta["epoch"] == 0 and 0 < meta["step"] < 20 and (20 + meta["step"]) % 3 == 0, meta
    assert [int(r["epoch"]) for r in read_history(cut)] == [1]
    resumed = run_kerascnn("train", "--resume", cut, "-q")      # the recorded engine (jax) is kept
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    k = meta["step"]
    assert f"from epoch 2, step {k + 1} of 20 (epochs 1-1 and steps 1-{k} of 20 of epoch 2 done)" in resumed.stdout
    assert "engine jax" in resumed.stdout
    assert json.loads((cut / "config.json").read_text())["engine"] == "jax"
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):   # the epoch's sums resumed exactly
        assert [r[key] for r in read_history(cut)] == [r[key] for r in read_history(full)], key
    for a, b in zip(load_weights(full / "last.keras"), load_weights(cut / "last.keras")):
        assert np.array_equal(a, b)   # bitwise: same engine, same device, state restored exactly
    other = kerascnn_in_process("train", "--resume", cut, "--epochs", "3", "--backend", "tensorflow", "-q")
    assert other.returncode == 2 and "resumes exactly only on that engine" in other.stderr


def test_nan_on_jax_stops_with_one_line_and_keeps_the_last_good_model(runs):
    _, cut, _, _ = runs
    before = load_weights(cut / "last.keras")
    bad = run_kerascnn("train", "--resume", cut, "--epochs", "3", "--lr", "1e30", "--schedule", "constant", "-q")
    assert bad.returncode == 1
    errors = [l for l in bad.stderr.splitlines() if l.startswith("Error:")]
    assert len(errors) == 1 and "loss became NaN at epoch 3" in errors[0] and "Traceback" not in bad.stderr
    for a, b in zip(before, load_weights(cut / "last.keras")):
        assert np.array_equal(a, b)
    assert [int(r["epoch"]) for r in read_history(cut)] == [1, 2]


def _tensorflow_validation(run) -> dict:
    """The run's validation split scored by Keras on TensorFlow (this process's backend) from last.keras."""
    import keras

    from kerascnn import data as D

    cfg = json.loads((run / "config.json").read_text())
    d = D.load_data(cfg["dataset"], cfg.get("data"), seed=cfg["seed"])
    _, _, xv, yv = D.split_validation(d.x_train, d.y_train, cfg["val_split"], cfg["seed"])
    xv = D.prepare_images(xv, cfg["input_shape"][:2], cfg["input_shape"][2], d.pixel_scale)
    p = keras.models.load_model(run / "last.keras").predict(xv, verbose=0)
    loss = float(np.mean(keras.losses.sparse_categorical_crossentropy(yv, p)))
    return {"backend": keras.backend.backend(), "val_accuracy": float(np.mean(p.argmax(-1) == yv)),
            "val_loss": loss, "n": len(yv)}


def test_jax_trained_model_evaluates_and_exports_with_tensorflow(runs, tmp_path):
    full, _, _, _ = runs
    tf_side = _tensorflow_validation(full)
    last = read_history(full)[-1]
    assert tf_side["backend"] == "tensorflow" and tf_side["n"] == 144
    # the JAX engine's validation pass (XLA kernels) and TensorFlow's (oneDNN) on the saved .keras:
    # the same predictions (a flip needs two probabilities within round-off of each other: allow
    # one) and the same mean loss within a worst-case float32 bound: 5 layers of dot products of
    # at most 400 terms (F5's input) each err by <= 400 eps relative, on pre-softmax values of
    # magnitude <= ~20, and -log softmax moves by at most twice the largest change of them
    eps = float(np.finfo(np.float32).eps)
    assert abs(tf_side["val_accuracy"] - float(last["val_accuracy"])) <= 1 / 144
    assert abs(tf_side["val_loss"] - float(last["val_loss"])) <= 2 * 20 * 5 * 400 * eps
    ev = kerascnn_in_process("evaluate", full, "--format", "json")
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert json.loads(ev.stdout)["accuracy"] > 0.5
    ex = kerascnn_in_process("export", full, "--out", tmp_path / "sm")
    assert ex.returncode == 0, ex.stderr[-2000:]
    assert (tmp_path / "sm" / "saved_model.pb").is_file()


def test_jax_training_runs_where_tensorflow_is_missing(tmp_path):
    """As on the GPU machine (JAX + Keras, no TensorFlow): 28x28 data needs no resize."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (np.pad(np.kron(d.images, np.ones((3, 3))), ((0, 0), (2, 2), (2, 2))) * 15.9).astype(np.uint8)
    np.savez(tmp_path / "d28.npz", x_train=x[:1500], y_train=d.target[:1500], x_test=x[1500:],
             y_test=d.target[1500:])
    r = run_without_tensorflow("train", "lenet5", "-o", "variant=modern", "--backend", "jax", "--data",
                               tmp_path / "d28.npz", "--epochs", "2", "--run-dir", tmp_path / "run", "-q", timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "engine jax" in r.stdout
    for name in ("config.json", "history.csv", "best.keras", "last.keras", "metrics.json", "backup/state.npz"):
        assert (tmp_path / "run" / name).is_file(), name
    assert float(read_history(tmp_path / "run")[-1]["val_accuracy"]) > 0.5


def test_tf_distribute_options_are_refused_with_jax_in_one_line(invoke):
    r = invoke("train", "lenet5", "--backend", "jax", "--strategy", "mirrored")
    assert r.exit_code == 2 and "--strategy: tf.distribute options, not for --backend jax" in r.output
    assert "Traceback" not in r.output
