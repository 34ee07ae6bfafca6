"""`kerascnn export`: a SavedModel that plain TensorFlow serves, verified, never half-written."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

SHAPE = (28, 28, 1)
NAMES = [f"class_{i}" for i in range(10)]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """An untrained (seeded) convnet saved as RUN/best.keras with a minimal config.json."""
    import keras

    from kerascnn import fsutil
    from kerascnn.registry import build_model

    keras.utils.set_random_seed(0)
    run = tmp_path_factory.mktemp("export") / "run"
    run.mkdir()
    model = build_model("convnet", SHAPE, 10)
    model.save(run / "best.keras")
    fsutil.atomic_write_json(run / "config.json", {
        "model": "convnet", "model_options": {}, "input_shape": list(SHAPE), "num_classes": 10,
        "class_names": NAMES, "pixel_scale": 1 / 255})
    return run


def _batch(n=6, seed=1):
    return np.random.default_rng(seed).integers(0, 256, size=(n,) + SHAPE, dtype=np.uint8)


def _keras_probs(run, x_uint8):
    from kerascnn.runs import load_keras_model

    model = load_keras_model(run / "best.keras")
    return np.asarray(model(x_uint8.astype(np.float32) / 255.0, training=False))


def test_export_loads_in_a_tensorflow_only_process(invoke, tiny_run, tmp_path):
    out = tmp_path / "sm"
    r = invoke("export", tiny_run, "--out", out)
    assert r.exit_code == 0, r.output
    assert "serving_default(images: uint8[None,28,28,1]) -> probabilities: float32[None,10]" in r.output
    assert "max |diff|" in r.output
    meta = json.loads((out / "kerascnn.json").read_text())
    assert meta["class_names"] == NAMES and meta["input_shape"] == list(SHAPE)
    assert json.loads((out / "assets" / "class_names.json").read_text()) == NAMES

    x = _batch()
    np.save(tmp_path / "x.npy", x)
    code = textwrap.dedent(f"""
        import sys, json, numpy as np, tensorflow as tf
        m = tf.saved_model.load({str(out)!r})
        x = np.load({str(tmp_path / 'x.npy')!r})
        p = m.signatures["serving_default"](images=tf.constant(x))["probabilities"].numpy()
        f = m.signatures["serve_float"](images=tf.constant(x.astype("float32")))["probabilities"].numpy()
        assert not any(k.startswith("kerascnn") for k in sys.modules)
        np.save({str(tmp_path / 'p.npy')!r}, np.stack([p, f]))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    p, f = np.load(tmp_path / "p.npy")
    expected = _keras_probs(tiny_run, x)
    assert p.shape == (6, 10) and p.dtype == np.float32
    assert np.max(np.abs(p - expected)) <= 1e-5 and np.max(np.abs(f - expected)) <= 1e-5
    assert np.array_equal(p.argmax(1), expected.argmax(1))
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)


def test_saved_model_cli_lists_the_stable_signature(invoke, tiny_run, tmp_path):
    out = tmp_path / "sm"
    assert invoke("export", tiny_run, "--out", out).exit_code == 0
    cli = Path(sys.executable).with_name("saved_model_cli")
    if not cli.exists():
        pytest.skip("saved_model_cli not installed beside this Python")
    proc = subprocess.run([str(cli), "show", "--all", "--dir", str(out)], capture_output=True, text=True,
                          timeout=300, env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout
    sd = text[text.index("signature_def['serving_default']"):]
    assert "inputs['images']" in sd and "DT_UINT8" in sd.split("outputs")[0]
    assert "shape: (-1, 28, 28, 1)" in sd
    assert "outputs['probabilities']" in sd and "shape: (-1, 10)" in sd
    assert "signature_def['serve_float']" in text


def test_no_overwrite_without_force_and_force_replaces(invoke, tiny_run, tmp_path):
    out = tmp_path / "sm"
    out.mkdir()
    (out / "marker.txt").write_text("old export")
    r = invoke("export", tiny_run, "--out", out)
    assert r.exit_code == 2 and "already exists" in r.output and "--force" in r.output
    assert "Traceback" not in r.output and len([ln for ln in r.output.splitlines() if ln.startswith("Error:")]) == 1
    assert (out / "marker.txt").read_text() == "old export" and not (out / "saved_model.pb").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sm"]  # no staging dir left beside it
    r = invoke("export", tiny_run, "--out", out, "--force")  # not a kerascnn export: refused, untouched
    assert r.exit_code == 2 and "not a kerascnn export" in r.output and "marker.txt" in r.output, r.output
    assert (out / "marker.txt").read_text() == "old export" and not (out / "saved_model.pb").exists()
    out2 = tmp_path / "sm2"
    assert invoke("export", tiny_run, "--out", out2).exit_code == 0
    first = (out2 / "saved_model.pb").stat().st_ino
    r = invoke("export", tiny_run, "--out", out2, "--force")  # a previous kerascnn export: replaced
    assert r.exit_code == 0, r.output
    assert (out2 / "saved_model.pb").is_file() and (out2 / "saved_model.pb").stat().st_ino != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sm", "sm2"]


def test_crash_before_commit_keeps_old_export_loadable(invoke, tiny_run, tmp_path, monkeypatch):
    from kerascnn import exporter as export_mod
    from kerascnn import fsutil

    out = tmp_path / "sm"
    assert invoke("export", tiny_run, "--out", out).exit_code == 0
    before = (out / "saved_model.pb").read_bytes()

    def crash(*a, **k):
        raise KeyboardInterrupt("simulated crash after staging")

    monkeypatch.setattr(fsutil, "commit_dir", crash)
    with pytest.raises(KeyboardInterrupt):
        export_mod.export(str(tiny_run), str(out), force=True)
    monkeypatch.undo()
    assert (out / "saved_model.pb").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sm"]

    # a partial left by a hard kill (no finally; its process is gone) is swept by the next export
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f".sm.partial-{dead}-0123abcd"
    stale.mkdir()
    (stale / "saved_model.pb").write_text("half")
    r = invoke("export", tiny_run, "--out", out, "--force")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sm"]

    import tensorflow as tf

    x = _batch(3)
    p = tf.saved_model.load(str(out)).signatures["serving_default"](images=tf.constant(x))["probabilities"]
    assert np.max(np.abs(p.numpy() - _keras_probs(tiny_run, x))) <= 1e-5


@pytest.mark.parametrize("fmt,extra,module", [("onnx", "onnx", "onnxruntime"), ("litert", "litert", "ai_edge_litert")])
def test_optional_formats_name_their_extra(invoke, tiny_run, tmp_path, fmt, extra, module):
    import importlib.util

    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed here; the missing-dependency message cannot be shown")
    r = invoke("export", tiny_run, "--out", tmp_path / "m", "--format", fmt)
    assert r.exit_code == 2, r.output
    assert f'pip install "kerascnn[{extra}]"' in r.output and "Traceback" not in r.output
    assert not any(tmp_path.iterdir())


def test_bad_reference_is_one_line(invoke, tmp_path):
    r = invoke("export", tmp_path / "nope.keras", "--out", tmp_path / "sm")
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert len([ln for ln in r.output.splitlines() if ln.startswith("Error:")]) == 1


def test_mixed_bfloat16_model_exports_float32_within_its_tolerance(tmp_path):
    """Training picks mixed_bfloat16 on bf16-capable CPUs/GPUs: export verifies at 1e-2, not 1e-5."""
    import keras
    import tensorflow as tf

    from kerascnn.exporter import export_savedmodel, tolerance_for
    from kerascnn.registry import build_model
    from kerascnn.training.record import RunRecord

    keras.utils.set_random_seed(0)
    f32 = build_model("convnet", SHAPE, 10)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        bf16 = build_model("convnet", SHAPE, 10)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    bf16.set_weights(f32.get_weights())
    assert tolerance_for(f32) == 1e-5 and tolerance_for(bf16) == 1e-2
    info = RunRecord.for_model("convnet", SHAPE, 10, class_names=NAMES)
    r = export_savedmodel(bf16, info, tmp_path / "sm")
    assert r["max_abs_diff"] <= 1e-2 and r["tolerance"] == 1e-2
    x = _batch(4)
    p = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"](images=tf.constant(x))
    p = p["probabilities"].numpy()
    assert p.dtype == np.float32
    ref = np.asarray(f32(x.astype(np.float32) / 255.0, training=False))
    assert np.max(np.abs(p - ref)) < 2e-2   # bf16 vs the float32 twin: close, not equal


def test_fuse_bn_export_matches_the_unfused_model(invoke, tmp_path):
    """--fuse-bn on a run: BatchNorm gone from the export, predictions equal the unfused model's."""
    import keras
    import tensorflow as tf

    from kerascnn import fsutil
    from kerascnn.registry import build_model

    keras.utils.set_random_seed(0)
    model = build_model("resnet18", (32, 32, 3), 10, small_input=True)
    rng = np.random.default_rng(0)
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization):  # non-trivial statistics to fold
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape),
                               rng.normal(0, 0.1, m.shape), rng.uniform(0.5, 2.0, v.shape)])
    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "best.keras")
    fsutil.atomic_write_json(run / "config.json", {
        "model": "resnet18", "model_options": {"small_input": True}, "input_shape": [32, 32, 3],
        "num_classes": 10, "class_names": NAMES, "pixel_scale": 1 / 255})
    r = invoke("export", run, "--fuse-bn", "--out", tmp_path / "sm")
    assert r.exit_code == 0, r.output
    assert "BatchNorm folded: 20 layers removed" in r.output
    x = np.random.default_rng(2).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    p = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"](images=tf.constant(x))
    ref = np.asarray(model(x.astype(np.float32) / 255.0, training=False))
    assert np.max(np.abs(p["probabilities"].numpy() - ref)) <= 1e-4 * max(1.0, float(np.abs(ref).max()))
    bare = invoke("export", run / "best.keras", "--fuse-bn", "--out", tmp_path / "sm2")
    assert bare.exit_code == 0, bare.output  # config.json beside the .keras supplies the options
