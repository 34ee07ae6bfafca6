"""`kerascnn evaluate` and `kerascnn predict` through the CLI, on a tiny convnet trained for
one epoch on the bundled digits (8x8, resized to 12x12 by the pipeline). No network."""
import json

import numpy as np
import pytest

from kerascnn import data as D

SIZE = (12, 12, 1)
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _tiny_model():
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input(SIZE, name="images")
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inp)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(10, activation="softmax", dtype="float32")(x)
    return keras.Model(inp, out, name="tiny")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory in the train contract: config.json + best.keras (one epoch on digits)."""
    import keras

    root = tmp_path_factory.mktemp("run")
    d = D.load_data("digits")
    x = D.prepare_images(d.x_train, SIZE[:2], SIZE[2], d.pixel_scale)
    model = _tiny_model()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(x, d.y_train, epochs=1, batch_size=32, verbose=0)
    model.save(root / "best.keras")
    config = {"model": "tiny", "model_options": {}, "input_shape": list(SIZE), "num_classes": 10,
              "class_names": NAMES, "pixel_scale": d.pixel_scale, "dataset": "digits", "data": None,
              "val_split": 0.0, "seed": 0}
    (root / "config.json").write_text(json.dumps(config))
    return root


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Eight digits from the test split written as PNG files (8x8 gray), plus their labels."""
    from PIL import Image

    root = tmp_path_factory.mktemp("pngs")
    d = D.load_data("digits")
    for i in range(8):
        Image.fromarray(d.x_test[i, ..., 0], "L").save(root / f"img{i}.png")
    return root, d.y_test[:8]


def _json(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _one_line_error(result, *fragments):
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    err = [ln for ln in lines if ln.startswith("Error")]
    assert len(err) == 1, result.output
    for f in fragments:
        assert f in err[0], result.output
    return err[0]


# --------------------------------------------------------------------------- evaluate
def test_evaluate_run_dir_json(invoke, run_dir):
    r = _json(invoke("evaluate", run_dir, "--format", "json"))
    for key in ("loss", "accuracy", "top3_accuracy", "top5_accuracy", "per_class", "macro_f1", "confusion_matrix",
                "images", "class_names", "out_dir"):
        assert key in r
    assert r["data"] == "digits" and r["split"] == "test" and r["images"] == 359
    assert 0.0 <= r["accuracy"] <= r["top3_accuracy"] <= r["top5_accuracy"] <= 1.0
    assert r["accuracy"] > 0.6  # one epoch: ~0.9, chance is 0.1
    assert np.isfinite(r["loss"]) and r["loss"] > 0
    m = np.array(r["confusion_matrix"])
    assert m.shape == (10, 10) and m.sum() == 359
    assert np.trace(m) / m.sum() == pytest.approx(r["accuracy"])
    assert [c["class"] for c in r["per_class"]] == NAMES
    assert sum(c["support"] for c in r["per_class"]) == 359
    assert all(0 <= c[k] <= 1 for c in r["per_class"] for k in ("precision", "recall", "f1"))
    out = run_dir / "eval-digits-test"
    assert (out / "confusion.png").stat().st_size > 1000
    saved = json.loads((out / "confusion.json").read_text())
    assert saved["matrix"] == r["confusion_matrix"] and saved["class_names"] == NAMES
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy"] == r["accuracy"]


def test_evaluate_matches_keras_loss_and_sklearn(run_dir):
    import keras
    from sklearn.metrics import accuracy_score

    from kerascnn.evaluation import metrics_from_probabilities, predict_probabilities
    from kerascnn.runs import load_keras_model

    model = load_keras_model(run_dir / "best.keras")
    d = D.load_data("digits")
    x = D.prepare_images(d.x_test, SIZE[:2], 1, d.pixel_scale)
    probs = predict_probabilities(model, x, batch_size=100)
    r = metrics_from_probabilities(probs, d.y_test, NAMES)
    ref = float(keras.losses.SparseCategoricalCrossentropy()(d.y_test, probs))
    assert r["loss"] == pytest.approx(ref, rel=1e-4)
    assert r["accuracy"] == pytest.approx(accuracy_score(d.y_test, probs.argmax(1)))
    from sklearn.metrics import f1_score

    assert r["macro_f1"] == pytest.approx(f1_score(d.y_test, probs.argmax(1), average="macro"))


def test_evaluate_table_train_split_and_out(invoke, run_dir, tmp_path):
    res = invoke("evaluate", run_dir, "--split", "train", "--out", tmp_path / "ev", "--batch-size", "100")
    assert res.exit_code == 0, res.output
    assert "train, 1438 images" in res.output and "accuracy" in res.output and "top-5" in res.output
    assert "seven" in res.output  # per-class table uses the run's class names
    assert (tmp_path / "ev" / "confusion.png").stat().st_size > 1000


def test_evaluate_keras_file_on_npz(invoke, run_dir, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 20, 20, 3), dtype=np.uint8)  # RGB, other size: adapted by the pipeline
    y = np.arange(30) % 3
    np.savez(tmp_path / "three.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    r = _json(invoke("evaluate", run_dir / "best.keras", "--data", tmp_path / "three.npz",
                     "--out", tmp_path / "ev", "--format", "json"))
    assert r["images"] == 30 and np.array(r["confusion_matrix"]).sum() == 30
    assert 0 <= r["accuracy"] <= 1
    assert (tmp_path / "ev" / "confusion.png").stat().st_size > 0


def test_evaluate_class_folder_warns_in_one_line(invoke, run_dir, images, tmp_path):
    import shutil

    folder, labels = images
    for i in range(8):
        cls = tmp_path / "f" / ("a" if labels[i] % 2 else "b")
        cls.mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / f"img{i}.png", cls)
    (tmp_path / "f" / "a" / "readme.txt").write_text("not an image")
    res = invoke("evaluate", run_dir, "--data", tmp_path / "f", "--out", tmp_path / "ev")
    assert res.exit_code == 0, res.output
    assert f"warning: skipped 1 non-image file(s) in class folders: {tmp_path / 'f' / 'a' / 'readme.txt'}" \
        in res.output
    assert "UserWarning" not in res.output and "DataWarning" not in res.output


def test_evaluate_bad_inputs_are_one_line(invoke, run_dir, tmp_path):
    y = np.arange(24) % 12  # labels up to 11 for a 10-class model
    np.savez(tmp_path / "twelve.npz", x_train=np.zeros((24, 8, 8), np.uint8), y_train=y,
             x_test=np.zeros((24, 8, 8), np.uint8), y_test=y)
    _one_line_error(invoke("evaluate", run_dir, "--data", tmp_path / "twelve.npz"), "label 11", "10 classes")
    np.savez(tmp_path / "names.npz", images=np.zeros((4, 8, 8)), labels=np.arange(4))
    _one_line_error(invoke("evaluate", run_dir, "--data", tmp_path / "names.npz"), "names.npz", "found images")
    (tmp_path / "notrun").mkdir()
    _one_line_error(invoke("evaluate", tmp_path / "notrun"), "not a kerascnn run directory")
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    _one_line_error(invoke("evaluate", tmp_path / "broken.keras"), "broken.keras")
    res = invoke("evaluate", run_dir, "--data", tmp_path / "missing.npz")
    assert res.exit_code == 2 and "Traceback" not in res.output


# --------------------------------------------------------------------------- predict
def test_predict_run_json(invoke, run_dir, images):
    folder, labels = images
    rows = _json(invoke("predict", run_dir, folder, "--top-k", "3", "--format", "json"))
    assert [r["image"] for r in rows] == [str(folder / f"img{i}.png") for i in range(8)]
    for r in rows:
        assert len(r["top"]) == 3
        probs = [t["probability"] for t in r["top"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-5
        assert all(t["class"] == NAMES[t["index"]] for t in r["top"])
    # the same predictions as evaluate's pipeline (PNG 0..255 -> 1/255, 8x8 -> 12x12)
    from kerascnn.evaluation import predict_probabilities
    from kerascnn.runs import load_keras_model

    d = D.load_data("digits")
    x = D.prepare_images(d.x_test[:8], SIZE[:2], 1, d.pixel_scale)
    expected = predict_probabilities(load_keras_model(run_dir / "best.keras"), x)
    assert [r["top"][0]["index"] for r in rows] == list(expected.argmax(1))
    assert rows[0]["top"][0]["probability"] == pytest.approx(float(expected[0].max()), abs=1e-5)


def test_predict_streams_a_folder_in_batches_in_the_same_order(invoke, run_dir, images):
    from kerascnn.prediction import iter_predictions, predict_files

    folder, _ = images
    whole = predict_files(str(run_dir), [folder], top_k=2)
    rows = iter_predictions(str(run_dir), [folder], top_k=2, batch=3)   # 3 + 3 + 2 files
    assert next(rows) == whole[0]
    assert [whole[0]] + list(rows) == whole and len(whole) == 8
    assert _json(invoke("predict", run_dir, folder, "--top-k", "2", "--format", "json")) == whole


def test_predict_table_and_top_k_capped(invoke, run_dir, images):
    folder, _ = images
    res = invoke("predict", run_dir / "best.keras", folder / "img0.png", folder / "img1.png", "--top-k", "50")
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    assert len(lines) == 2 and lines[0].startswith(str(folder / "img0.png"))
    assert lines[0].count(",") == 9  # 10 classes shown, not 50; a .keras alone has names "0".."9"


def test_predict_savedmodel_export(invoke, run_dir, images, tmp_path):
    from kerascnn.exporter import export_savedmodel
    from kerascnn.runs import resolve_model

    model, info = resolve_model(str(run_dir))
    export_savedmodel(model, info, tmp_path / "sm")
    folder, _ = images
    from_export = _json(invoke("predict", tmp_path / "sm", folder, "--format", "json"))
    from_run = _json(invoke("predict", run_dir, folder, "--format", "json"))
    for a, b in zip(from_export, from_run):
        assert [t["class"] for t in a["top"]] == [t["class"] for t in b["top"]]
        # the export's uint8 signature rounds the resized (8x8 -> 12x12) pixels: tiny differences only
        assert a["top"][0]["probability"] == pytest.approx(b["top"][0]["probability"], abs=5e-3)
    assert from_export[0]["top"][0]["class"] in NAMES


def test_predict_bad_inputs_are_one_line(invoke, run_dir, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    _one_line_error(invoke("predict", run_dir, bad), "bad.png", "not a readable image")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    _one_line_error(invoke("predict", run_dir, empty), "empty.jpg")
    (tmp_path / "nothing").mkdir()
    _one_line_error(invoke("predict", run_dir, tmp_path / "nothing"), "no image files")
    res = invoke("predict", run_dir, tmp_path / "missing.png")
    assert res.exit_code == 2 and "Traceback" not in res.output
    res = invoke("predict", run_dir, tmp_path / "nothing", "--top-k", "0")
    assert res.exit_code == 2


def test_evaluate_which_last_uses_the_last_epoch_model(invoke, trained_run):
    best = _json(invoke("evaluate", trained_run, "--format", "json"))
    last = _json(invoke("evaluate", trained_run, "--format", "json", "--which", "last"))
    assert best["model_file"] == "best.keras" and last["model_file"] == "last.keras"
    assert (trained_run / "eval-digits-test" / "metrics.json").is_file()
    assert json.loads((trained_run / "eval-digits-test-last" / "metrics.json").read_text())["accuracy"] == \
        last["accuracy"]
