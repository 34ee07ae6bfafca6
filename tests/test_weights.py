"""Pretrained weights (issue 15): keras.applications weight files load into kerascnn's VGG-16/19 and
ResNet-50 (``variant=keras``) and compute the same function.

The reference models are ``keras.applications`` models built with ``weights=None`` (no
download), filled with random-but-fixed weights (BatchNorm statistics included), saved in the
legacy HDF5 layout of the files Keras caches (``layer_names`` / ``weight_names`` attributes),
loaded into kerascnn, and compared on random images. Both sides run the same Keras layers in
the same order on the same CPU, so the outputs agree to float32 round-off; the bound is the
issue's 1e-5 of the largest logit.
"""
import json

import h5py
import numpy as np
import pytest

keras = pytest.importorskip("keras")

import kerascnn
from kerascnn import pretrained as W
from kerascnn.registry import get_entry

REL = 1e-5


def _randomise(model, seed):
    """He-scaled random kernels, small random biases, BatchNorm stats not at their defaults."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        ws = layer.get_weights()
        if not ws:
            continue
        if isinstance(layer, keras.layers.BatchNormalization):   # gamma/beta may be absent (scale=False)
            draw = {"gamma": lambda s: rng.uniform(0.5, 1.5, s), "beta": lambda s: rng.normal(0, 0.1, s),
                    "moving_mean": lambda s: rng.normal(0, 0.1, s),
                    "moving_variance": lambda s: rng.uniform(0.5, 1.5, s)}
            ws = [draw[w.name](w.shape) for w in layer.weights]
        elif isinstance(layer, keras.layers.Normalization):   # EfficientNet's input statistics: a variance > 0
            m, v, count = ws
            ws = [rng.normal(0, 0.1, m.shape), rng.uniform(0.5, 1.5, v.shape), count]
        else:
            ws = [rng.normal(0, np.sqrt(2 / np.prod(w.shape[:-1])), w.shape) if w.ndim > 1
                  else rng.normal(0, 0.1, w.shape) for w in ws]
        layer.set_weights([w.astype("float32") for w in ws])


def _save_legacy(model, path):
    """The layout of keras.applications' downloads (Keras's legacy HDF5 weight writer)."""
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return path


def _logits_model(model):
    """The same model with its softmax taken off the last layer (logits)."""
    model.layers[-1].activation = keras.activations.linear
    return model


def _assert_close(got, ref):
    assert got.shape == ref.shape
    scale = float(np.abs(ref).max())
    assert scale > 0
    assert float(np.abs(got - ref).max()) <= REL * scale


def test_resnet50_keras_variant_has_keras_applications_param_count():
    # pure-Python analysis at 224x224x3, 1000 classes: the published keras.applications figure
    assert get_entry("resnet50").analyze(variant="keras").total_params == 25_636_712
    assert get_entry("resnet50").analyze(variant="v1").total_params == 25_636_712
    assert get_entry("resnet50").analyze().total_params != 25_636_712  # v1.5 is another model


def test_resnet50_keras_file_gives_equal_logits(tmp_path):
    ref = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=10,
                                      classifier_activation=None)
    _randomise(ref, 0)
    path = _save_legacy(ref, tmp_path / "resnet50_weights.h5")
    model = kerascnn.build("resnet50", (64, 64, 3), 10, variant="keras")
    assert model.count_params() == ref.count_params() == 23_608_202
    report = W.load_into(model, path)
    assert len(report.loaded) == 107 and report.fresh == []
    x = np.random.default_rng(1).uniform(-124, 152, (3, 64, 64, 3)).astype("float32")
    _assert_close(_logits_model(model).predict(x, verbose=0), ref.predict(x, verbose=0))


def test_vgg16_full_file_gives_equal_logits(tmp_path):
    ref = keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=10,
                                   classifier_activation=None)
    _randomise(ref, 2)
    path = _save_legacy(ref, tmp_path / "vgg16.h5")
    model = kerascnn.build("vgg16", (32, 32, 3), 10)
    report = W.load_into(model, path)
    assert len(report.loaded) == 16 and report.fresh == []
    x = np.random.default_rng(3).uniform(-124, 152, (2, 32, 32, 3)).astype("float32")
    _assert_close(_logits_model(model).predict(x, verbose=0), ref.predict(x, verbose=0))


def test_vgg19_notop_file_loads_the_backbone_and_leaves_a_new_head(tmp_path):
    ref = keras.applications.VGG19(weights=None, include_top=False, input_shape=(32, 32, 3))
    _randomise(ref, 4)
    path = _save_legacy(ref, tmp_path / "vgg19_notop.h5")
    model = kerascnn.build("vgg19", (32, 32, 3), 5)
    head_before = model.get_layer("predictions").get_weights()[0].copy()
    report = W.load_into(model, path)
    assert report.fresh == ["fc1", "fc2", "predictions"] and len(report.loaded) == 16
    np.testing.assert_array_equal(model.get_layer("predictions").get_weights()[0], head_before)
    x = np.random.default_rng(5).uniform(-124, 152, (2, 32, 32, 3)).astype("float32")
    features = keras.Model(model.inputs, model.get_layer("block5_pool").output)
    _assert_close(features.predict(x, verbose=0), ref.predict(x, verbose=0))


def test_mismatches_are_one_clear_error_and_change_nothing(tmp_path):
    ref = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    path = _save_legacy(ref, tmp_path / "vgg16_notop.h5")
    resnet = kerascnn.build("resnet18", (32, 32, 3), 10, small_input=True)
    with pytest.raises(W.WeightsError, match="block1_conv1.*not in resnet18"):
        W.load_into(resnet, path)
    vgg11 = kerascnn.build("vgg11", (32, 32, 3), 10)
    before = [w.copy() for w in vgg11.get_weights()]
    with pytest.raises(W.WeightsError, match="not in vgg11"):  # block1_conv2 exists only in VGG-16
        W.load_into(vgg11, path)
    assert all(np.array_equal(a, b) for a, b in zip(before, vgg11.get_weights()))
    with pytest.raises(W.WeightsError, match="not found"):
        W.read_weight_file(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(W.WeightsError, match="cannot read"):
        W.read_weight_file(tmp_path / "junk.h5")


def test_keras3_weights_file_of_a_kerascnn_model_round_trips(tmp_path):
    a = kerascnn.build("resnet18", (32, 32, 3), 4, small_input=True)
    _randomise(a, 6)
    a.save_weights(tmp_path / "r18.weights.h5")
    b = kerascnn.build("resnet18", (32, 32, 3), 4, small_input=True)
    report = W.load_into(b, tmp_path / "r18.weights.h5")
    assert len(report.loaded) == len(W.weighted_layers(b))
    assert all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))


def test_imagenet_uses_the_keras_cache_or_says_what_to_place_where(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(W.WeightsError) as e:
        W.imagenet_file("vgg16", include_top=False)
    msg = str(e.value)
    assert "\n" not in msg and "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in msg
    assert str(tmp_path / "models") in msg and "storage.googleapis.com" in msg
    with pytest.raises(W.WeightsError, match="variant=keras"):
        W.imagenet_file("resnet50", {})
    with pytest.raises(W.WeightsError, match="no keras.applications ImageNet weights for lenet5"):
        W.imagenet_file("lenet5")
    (tmp_path / "models").mkdir()
    placed = tmp_path / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels.h5"
    placed.write_bytes(b"")
    assert W.imagenet_file("resnet50", {"variant": "keras"}) == placed
    # other classes at 224 take the _notop file, or the full one when only that is cached
    assert W.imagenet_path("resnet50", {"variant": "keras"}, (224, 224, 3), 5) == placed
    assert W.default_preprocessing("imagenet", "resnet50", {"variant": "keras"}) == "caffe"
    with pytest.raises(W.WeightsError, match="_notop.h5"):
        W.imagenet_path("resnet50", {"variant": "keras"}, (64, 64, 3), 5)


# ------------------------------------------------------------------ preprocessing and `train --weights`

def test_caffe_preprocessing_layer_is_keras_applications_preprocess_input():
    from kerascnn.layers import ImagenetPreprocess

    x = np.random.default_rng(7).uniform(0, 1, (2, 5, 5, 3)).astype("float32")
    ref = keras.applications.vgg16.preprocess_input(x * 255.0)
    got = keras.ops.convert_to_numpy(ImagenetPreprocess("caffe")(x))
    np.testing.assert_allclose(got, ref, rtol=0, atol=255 * 2 ** -23 * 4)  # a few ulps of 255
    tv = keras.ops.convert_to_numpy(ImagenetPreprocess("torch")(x))
    np.testing.assert_allclose(tv[..., 0], (x[..., 0] - 0.485) / 0.229, rtol=1e-6)


def _convnet_file(tmp_path, seed=8):
    model = kerascnn.build("convnet")
    _randomise(model, seed)
    return model, _save_legacy(model, tmp_path / "convnet_pretrained.h5")


def test_train_starts_from_the_weight_file_and_records_it(tmp_path, invoke):
    src, path = _convnet_file(tmp_path)
    run = tmp_path / "run"
    r = invoke("train", "convnet", "--weights", path, "--epochs", "1", "--lr", "1e-9", "--optimizer", "sgd",
               "--precision", "float32", "--run-dir", run, "-q")
    assert r.exit_code == 0, r.output
    assert "loaded 5 layers" in r.output and "preprocessing none" in r.output
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["weights"] == str(path.resolve()) and cfg["weights_preprocessing"] == "none"
    trained = keras.models.load_model(run / "last.keras")
    # SGD at lr 1e-9 for one epoch moves no weight by more than ~1e-8: the start was the file's weights
    for a, b in zip(src.get_weights(), trained.get_weights()):
        np.testing.assert_allclose(b, a, atol=1e-6)
    # resume needs only the saved state, not the weight file
    path.unlink()
    r = invoke("train", "--resume", run, "--epochs", "2", "-q")
    assert r.exit_code == 0, r.output
    assert len((run / "history.csv").read_text().strip().splitlines()) == 3


def test_train_weight_errors_are_one_line_and_leave_no_run_dir(tmp_path, invoke):
    ref = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    vgg = _save_legacy(ref, tmp_path / "vgg16_notop.h5")
    _, conv = _convnet_file(tmp_path)
    for args, needle in (((vgg,), "block1_conv1"), ((conv, "--preprocessing", "torch"), "RGB images"),
                         ((tmp_path / "nope.h5",), "no such file")):
        run = tmp_path / f"run-{needle[:5]}"
        r = invoke("train", "convnet", "--weights", *args, "--epochs", "1", "--run-dir", run, "-q")
        assert r.exit_code != 0 and needle in r.output, r.output
        assert "Traceback" not in r.output and not run.exists()


def test_summary_weights_says_what_was_loaded(tmp_path, invoke, monkeypatch):
    ref = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    path = _save_legacy(ref, tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
    r = invoke("summary", "vgg16", "--input-shape", "32,32,3", "--classes", "10", "--weights", path)
    assert r.exit_code == 0, r.output
    assert f"loaded 13 layers from {path}; new (not from the file): fc1, fc2, predictions" in r.output
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty"))
    r = invoke("summary", "vgg16", "--weights", "imagenet")
    assert r.exit_code == 1 and "place vgg16_weights_tf_dim_ordering_tf_kernels.h5" in r.output
    r = invoke("summary", "vgg16", "--no-keras", "--weights", path)
    assert r.exit_code == 2 and "--weights applies to registered models" in r.output


# ------------------------------------------------------------------ fine-tuning: freeze, unfreeze, resume

def _kill_after_epoch(common, run_dir, epoch):
    """Run `kerascnn COMMON --run-dir RUN_DIR` in a process, SIGKILL it once epoch EPOCH is saved."""
    import signal

    from conftest import kill_after_epoch

    assert kill_after_epoch(epoch, *common, "--run-dir", run_dir) == -signal.SIGKILL


@pytest.mark.slow
def test_freeze_then_unfreeze_trains_the_head_first_and_resumes_exactly(tmp_path, invoke):
    """Phase 1 (1 epoch) moves only the head; phase 2 at 0.1x lr moves the unfrozen conv layer;
    a SIGKILL at the switch or inside phase 2, then --resume, equals the uninterrupted run bitwise."""
    src, path = _convnet_file(tmp_path, seed=9)
    common = ["train", "convnet", "--weights", path, "--freeze-epochs", "1", "--unfreeze", "1", "--epochs", "3",
              "--lr", "0.01", "--seed", "5", "--deterministic", "--precision", "float32", "-q"]
    full = invoke(*common, "--run-dir", tmp_path / "full")
    assert full.exit_code == 0, full.output
    assert "epoch 2: unfroze 4 layers (1 stay frozen); lr x0.1" in full.output
    ft = json.loads((tmp_path / "full" / "config.json").read_text())["finetune"]
    assert ft["phase1_frozen"] == ["conv2d", "conv2d_1"] and ft["phase2_unfrozen"] == ["conv2d_1"]
    assert ft["phase1_trainable"] == ["dense", "dense_1", "dense_2"] and ft["phase2_from_epoch"] == 2
    assert ft["phase2_lr"] == pytest.approx(0.001)
    a = keras.models.load_model(tmp_path / "full" / "last.keras")
    assert np.array_equal(a.get_layer("conv2d").get_weights()[0], src.get_layer("conv2d").get_weights()[0])
    assert not np.array_equal(a.get_layer("conv2d_1").get_weights()[0], src.get_layer("conv2d_1").get_weights()[0])

    _kill_after_epoch(common, tmp_path / "cut1", 1)
    after_phase1 = keras.models.load_model(tmp_path / "cut1" / "last.keras")
    for name in ("conv2d", "conv2d_1"):       # frozen: exactly the file's weights
        for x, y in zip(src.get_layer(name).get_weights(), after_phase1.get_layer(name).get_weights()):
            assert np.array_equal(x, y)
    assert not np.array_equal(src.get_layer("dense").get_weights()[0], after_phase1.get_layer("dense").get_weights()[0])
    _kill_after_epoch(common, tmp_path / "cut2", 2)
    for cut, needle in (("cut1", "unfroze 4 layers"), ("cut2", "from epoch 3")):
        resumed = invoke("train", "--resume", tmp_path / cut, "-q")
        assert resumed.exit_code == 0 and needle in resumed.output, resumed.output
        b = keras.models.load_model(tmp_path / cut / "last.keras")
        for x, y in zip(a.get_weights(), b.get_weights()):
            assert np.array_equal(x, y), cut


def test_freeze_epochs_must_leave_epochs_to_fine_tune(tmp_path, invoke):
    _, path = _convnet_file(tmp_path)
    r = invoke("train", "convnet", "--weights", path, "--freeze-epochs", "2", "--epochs", "2",
               "--run-dir", tmp_path / "run", "-q")
    assert r.exit_code == 2 and "leaves no epoch" in r.output and not (tmp_path / "run").exists()
    r = invoke("train", "convnet", "--weights", path, "--freeze-epochs", "1", "--unfreeze", "some", "-q")
    assert r.exit_code == 2 and "--unfreeze expects all or a number" in r.output


def test_v1_block_and_bn_epsilon_round_trip_through_the_spec_language_and_keras_config():
    from kerascnn import speclang
    from kerascnn import specs as S
    from kerascnn.layers import ResidualBlock
    from kerascnn.rules import rule_for

    block = S.Residual(64, 2, bottleneck=True, projection=True, v1=True)
    assert rule_for(block).token() == "bottleneck64s2projv1"
    assert speclang.parse("bottleneck64s2projv1")[0] == block
    bn = S.BatchNorm(epsilon=1.001e-5)
    assert speclang.parse(rule_for(bn).token())[0] == bn
    main, shortcut = block.branches()
    assert [(s.stride, s.use_bias) for s in main if isinstance(s, S.Conv)] == [(2, True), (1, True), (1, True)]
    assert {s.epsilon for s in main + shortcut if isinstance(s, S.BatchNorm)} == {1.001e-5}
    layer = ResidualBlock(64, 2, True, True, v1=True, name="b")
    again = ResidualBlock.from_config(layer.get_config())
    assert again.v1 and again.get_config() == layer.get_config()


def test_evaluate_a_registered_model_with_weights_equals_evaluating_that_model(tmp_path, invoke):
    src, path = _convnet_file(tmp_path, seed=10)
    src.save(tmp_path / "src.keras")
    a = invoke("evaluate", "convnet", "--weights", path, "--out", tmp_path / "a", "--format", "json")
    b = invoke("evaluate", tmp_path / "src.keras", "--out", tmp_path / "b", "--format", "json")
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    ra, rb = json.loads(a.output), json.loads(b.output)
    assert ra["images"] == rb["images"] == 359
    assert ra["accuracy"] == rb["accuracy"] and ra["loss"] == pytest.approx(rb["loss"], rel=1e-6)
    r = invoke("evaluate", tmp_path / "src.keras", "--weights", path)
    assert r.exit_code == 2 and "registered model name" in r.output


def test_predict_a_registered_model_with_weights_equals_predicting_with_that_model(tmp_path, invoke):
    from PIL import Image

    src, path = _convnet_file(tmp_path, seed=11)
    src.save(tmp_path / "src.keras")
    img = tmp_path / "digit.png"
    Image.fromarray(np.random.default_rng(12).integers(0, 256, (28, 28), dtype=np.uint8)).save(img)
    a = invoke("predict", "convnet", img, "--weights", path, "--top-k", "10", "--format", "json")
    b = invoke("predict", tmp_path / "src.keras", img, "--top-k", "10", "--format", "json")
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    ta, tb = json.loads(a.output)[0]["top"], json.loads(b.output)[0]["top"]
    assert [t["index"] for t in ta] == [t["index"] for t in tb]
    np.testing.assert_allclose([t["probability"] for t in ta], [t["probability"] for t in tb], rtol=1e-6)
    r = invoke("predict", tmp_path / "src.keras", img, "--weights", path)
    assert r.exit_code == 2 and "registered model name" in r.output


def test_export_a_registered_model_with_weights_serves_what_the_model_predicts(tmp_path, invoke):
    from PIL import Image

    src, path = _convnet_file(tmp_path, seed=13)
    src.save(tmp_path / "src.keras")
    img = tmp_path / "digit.png"
    Image.fromarray(np.random.default_rng(14).integers(0, 256, (28, 28), dtype=np.uint8)).save(img)
    r = invoke("export", "convnet", "--weights", path, "--out", tmp_path / "sm")
    assert r.exit_code == 0, r.output
    a = invoke("predict", tmp_path / "sm", img, "--top-k", "10", "--format", "json")
    b = invoke("predict", tmp_path / "src.keras", img, "--top-k", "10", "--format", "json")
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    ta, tb = json.loads(a.output)[0]["top"], json.loads(b.output)[0]["top"]
    assert [t["index"] for t in ta] == [t["index"] for t in tb]
    np.testing.assert_allclose([t["probability"] for t in ta], [t["probability"] for t in tb], rtol=1e-5)


# ------------------------------------------------------------------ issue 24: what a file is, untrained heads

def test_what_a_file_is_comes_from_its_bytes_and_the_model_not_its_name(tmp_path):
    """The preprocessing of a Keras file is keras.applications' when the model is a keras.applications
    model layer for layer (vgg16, resnet50 -o variant=keras, the family), whatever the file is called
    or however Keras wrote it (download layout, model.save(".h5"), .weights.h5); a safetensors file
    named .h5 is a state_dict."""
    import shutil

    _, h5 = _convnet_file(tmp_path)
    for name in ("renamed.bin", "model_save.h5", "x.weights.h5", "no_suffix"):
        shutil.copy(h5, tmp_path / name)
        assert W.sniff(tmp_path / name) == "hdf5"
        assert W.default_preprocessing(str(tmp_path / name), "vgg16") == "caffe"
        assert W.default_preprocessing(str(tmp_path / name), "resnet50", {"variant": "keras"}) == "caffe"
        assert W.default_preprocessing(str(tmp_path / name), "mobilenetv2") == "tf"
        assert W.default_preprocessing(str(tmp_path / name), "vgg16", {"width": 0.5}) == "none"  # another model
        assert W.default_preprocessing(str(tmp_path / name), "convnet") == "none"
    from pathlib import Path

    st = Path(__file__).parent / "fixtures" / "torchvision" / "resnet18_small.safetensors"
    shutil.copy(st, tmp_path / "looks_like_keras.h5")
    assert W.sniff(tmp_path / "looks_like_keras.h5") == "safetensors"
    assert W.default_preprocessing(str(tmp_path / "looks_like_keras.h5"), "resnet18") == "torch"
    model = kerascnn.build("resnet18", (64, 64, 3), 10, width=1 / 32)
    assert W.load_into(model, tmp_path / "looks_like_keras.h5", model_name="resnet18").fresh == []


def test_predict_evaluate_export_refuse_a_classifier_the_file_does_not_hold(tmp_path, invoke):
    """A file without the classifier (or with one for another input) would predict from a random head, a
    different one each run: refused in one line, nothing written. A file with another number of classes
    is that many classes."""
    src = kerascnn.build("convnet")
    _randomise(src, 15)
    notop = keras.Sequential([keras.Input((28, 28, 1)), *src.layers[:-1]])
    path = _save_legacy(notop, tmp_path / "convnet_notop.h5")
    from PIL import Image

    img = tmp_path / "digit.png"
    Image.fromarray(np.random.default_rng(16).integers(0, 256, (28, 28), dtype=np.uint8)).save(img)
    for args in (("predict", "convnet", img), ("evaluate", "convnet", "--out", tmp_path / "ev"),
                 ("export", "convnet", "--out", tmp_path / "sm")):
        r = invoke(*args, "--weights", path)
        assert r.exit_code == 1, r.output
        assert (f"Error: {path} holds no trained classifier for convnet at 28x28x1 (dense_2 would start random); "
                f"predict, evaluate and export need one") in r.output and "Traceback" not in r.output
    assert not (tmp_path / "ev").exists() and not (tmp_path / "sm").exists()
    five = kerascnn.build("convnet", num_classes=5)
    _randomise(five, 17)
    r = invoke("predict", "convnet", img, "--weights", _save_legacy(five, tmp_path / "five.h5"), "--top-k", "10",
               "--format", "json")
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.output)[0]["top"]) == 5


@pytest.mark.slow
def test_keras3_weights_of_keras_applications_resnet50_load_into_the_keras_variant(tmp_path):
    """keras.applications.ResNet50(...).save_weights("x.weights.h5") names its groups by layer class
    (layers/conv2d_17): Keras loads it into its own ResNet50 built to the file's structure (with its top,
    10 classes), whose layers go into kerascnn's resnet50 -o variant=keras by name."""
    ref = keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10, classifier_activation=None)
    _randomise(ref, 18)
    ref.save_weights(tmp_path / "resnet50.weights.h5")
    model = kerascnn.build("resnet50", (32, 32, 3), 10, variant="keras")
    report = W.load_into(model, tmp_path / "resnet50.weights.h5", options={"variant": "keras"}, model_name="resnet50")
    assert len(report.loaded) == 107 and report.fresh == []
    x = np.random.default_rng(19).uniform(-124, 152, (2, 32, 32, 3)).astype("float32")
    _assert_close(np.asarray(_logits_model(model)(x, training=False)), np.asarray(ref(x, training=False)))
    r50 = kerascnn.build("resnet50", (32, 32, 3), 10)   # the v1.5 default: no keras.applications counterpart
    with pytest.raises(W.WeightsError, match=r"resnet50.weights.h5 does not fit resnet50: the file"):
        W.load_into(r50, tmp_path / "resnet50.weights.h5", model_name="resnet50")


def test_kerass_load_error_is_one_line():
    from kerascnn.pretrained.keras_apps import _keras_load_error

    e = ValueError("A total of 3 objects could not be loaded. Example error message for object <Conv2D name=conv2d, "
                   "built=True>:\n\nLayer 'conv2d' expected 2 variables, but received 0 variables during loading. "
                   "Expected: ['kernel', 'bias']\n\nList of objects that could not be loaded:\n[<Conv2D ...>]")
    assert _keras_load_error(e) == ("3 object(s) could not be loaded, e.g. <Conv2D name=conv2d, built=True>: Layer "
                                    "'conv2d' expected 2 variables, but received 0 variables during loading. "
                                    "Expected: ['kernel', 'bias']")
