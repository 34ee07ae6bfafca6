"""The keras.applications family as zoo models (issue 24): every architecture registered, built by
Keras's own constructor, equal to it with the same weights, listed with recorded figures.

CI checks two small members here (MobileNetV3Small, EfficientNetB0 at 64x64 for the outputs, at
their natural input for the figures); ``benchmarks/keras_apps.py`` checks all 37 (figures,
equal outputs, .keras round trip; benchmarks/RESULTS.md).
"""
import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import kerascnn
from kerascnn import pretrained as P
from kerascnn.registry import get_entry, list_models
from test_weights import _randomise, _save_legacy

# kerascnn's own spec models that are these keras.applications models layer for layer (tests/test_weights.py)
AS_SPEC_MODELS = {"VGG16": "vgg16", "VGG19": "vgg19", "ResNet50": "resnet50 -o variant=keras"}


def test_every_keras_application_is_a_zoo_model():
    constructors = {n for n in dir(keras.applications) if n[0].isupper()}
    family = {get_entry(n).extra.constructor for n in list_models(kind="keras")}
    assert family == constructors - set(AS_SPEC_MODELS) and len(family) == 37
    for name in list_models(kind="keras"):
        e = get_entry(name)
        assert name == e.extra.constructor.lower() and e.source == f"keras.applications.{e.extra.constructor}"
        assert e.kind == "keras" and not e.has_specs and e.published
    assert list_models("keras") == list_models(kind="keras")


def test_the_family_is_listed_without_tensorflow():
    """`kerascnn list keras` in a process where TensorFlow cannot be imported: the recorded figures."""
    from conftest import run_without_tensorflow

    r = run_without_tensorflow("list", "keras", "--format", "json")
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert len(rows) == 37 and rows["mobilenetv2"]["params"] == 3_538_984
    assert rows["efficientnetb7"]["default_input"] == [600, 600, 3]
    assert {row["source"].rsplit(".", 1)[0] for row in rows.values()} == {"keras.applications"}


def test_a_keras_built_entry_has_no_spec_list_and_says_so(invoke):
    from kerascnn.models.base import NoSpecs

    entry = get_entry("mobilenetv2")
    with pytest.raises(NoSpecs, match=r"mobilenetv2 is built by keras.applications.MobileNetV2: it has no spec list"):
        entry.specs()
    with pytest.raises(kerascnn.errors.GeometryError, match="needs at least 75x75"):
        get_entry("inceptionv3").check((64, 64, 3))
    with pytest.raises(kerascnn.errors.GeometryError, match="takes RGB images"):
        get_entry("mobilenetv2").check((64, 64, 1))
    r = invoke("summary", "mobilenetv2", "--no-keras")
    assert r.exit_code == 2 and "its arithmetic is read from the Keras model" in r.output


@pytest.mark.parametrize("name", ["mobilenetv3small", "efficientnetb0"])
def test_recorded_figures_are_the_built_models(name):
    """What `kerascnn list` shows without TensorFlow = Keras's count_params() and kerascnn.analyze(model)."""
    model = kerascnn.build(name)
    assert model.name == name and model.input_shape == (None, 224, 224, 3)
    params, trainable, macs = get_entry(name).figures()
    assert model.count_params() == params
    assert int(sum(np.prod(w.shape) for w in model.trainable_weights)) == trainable
    report = kerascnn.analyze(model)
    assert report.macs == macs and report.unknown == [] and report.keras_agrees
    ref = getattr(keras.applications, get_entry(name).extra.constructor)(weights=None)
    assert ref.count_params() == params


@pytest.mark.parametrize("name,module", [("mobilenetv3small", "mobilenet_v3"), ("efficientnetb0", "efficientnet")])
def test_equal_outputs_to_keras_applications_with_the_same_weights(name, module, tmp_path):
    """A random keras.applications model saved as its download is (legacy HDF5), loaded by order into the
    zoo model built in the same process (its auto-named layers, rescaling_1 ..., differ): the same
    function of the same image, each through its own preprocessing."""
    ctor = get_entry(name).extra.constructor
    ref = getattr(keras.applications, ctor)(weights=None, input_shape=(64, 64, 3), classes=10,
                                            classifier_activation=None)
    _randomise(ref, 0)
    path = _save_legacy(ref, tmp_path / f"{name}.h5")
    model = kerascnn.build(name, (64, 64, 3), 10)
    assert [l.name for l in model.layers] != [l.name for l in ref.layers]   # auto names differ: loaded by order
    report = P.load_into(model, path, model_name=name)
    assert report.fresh == [] and len(report.loaded) == len(P.weighted_layers(model))
    model.layers[-1].activation = keras.activations.linear
    x = np.random.default_rng(1).uniform(0, 1, (2, 64, 64, 3)).astype("float32")
    want = np.asarray(ref(getattr(keras.applications, module).preprocess_input(x * 255.0), training=False))
    got = np.asarray(model(x, training=False))
    assert float(np.abs(got - want).max()) <= 1e-5 * float(np.abs(want).max())
    if name != "mobilenetv3small":
        return
    # a Keras 3 .weights.h5 of the same keras.applications model: Keras's own loader, then by order
    ref.save_weights(tmp_path / "ref.weights.h5")
    again = kerascnn.build(name, (64, 64, 3), 10)
    assert P.load_into(again, tmp_path / "ref.weights.h5", model_name=name).fresh == []
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), again.get_weights()))


def test_notop_file_leaves_the_head_and_other_architectures_are_one_line(tmp_path):
    ref = keras.applications.MobileNetV3Small(weights=None, include_top=False, input_shape=(64, 64, 3))
    path = _save_legacy(ref, tmp_path / "notop.h5")
    model = kerascnn.build("mobilenetv3small", (64, 64, 3), 3)
    assert P.load_into(model, path, model_name="mobilenetv3small").fresh == ["conv_2", "logits"]
    from kerascnn.training.finetune import split

    backbone, head = split(model)   # the squeeze-and-excitation blocks pool globally inside the backbone
    assert [l.name for l in head if l.weights] == ["conv_2", "logits"]
    assert sum(1 for l in backbone if l.weights) == 86
    other = kerascnn.build("mobilenetv2", (64, 64, 3), 3)
    before = [w.copy() for w in other.get_weights()]
    with pytest.raises(P.WeightsError, match=r"notop.h5: .* where mobilenetv2 has .*another architecture"):
        P.load_into(other, path, model_name="mobilenetv2")
    assert all(np.array_equal(a, b) for a, b in zip(before, other.get_weights()))


@pytest.mark.slow
def test_efficientnet_imagenet_files_get_kerass_imagenet_correction(tmp_path):
    """keras.applications' ImageNet EfficientNet files hold std (not std**2) as the Normalization variance
    and Keras adds Rescaling(1/sqrt(std)) when it loads them (weights="imagenet"). A file with that
    content gets the same function here; the reference is Keras's own weights="imagenet" path, its
    download replaced by the file."""
    from unittest import mock

    from keras.src.utils import file_utils

    src = keras.applications.EfficientNetB0(weights=None, include_top=False, input_shape=(64, 64, 3))
    _randomise(src, 5)
    norm = next(l for l in src.layers if type(l).__name__ == "Normalization")
    norm.set_weights([np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32),
                      norm.get_weights()[2]])
    path = _save_legacy(src, tmp_path / "efficientnetb0_notop.h5")
    with mock.patch.object(file_utils, "get_file", lambda *a, **k: str(path)):
        ref = keras.applications.EfficientNetB0(weights="imagenet", include_top=False, input_shape=(64, 64, 3))
    model = kerascnn.build("efficientnetb0", (64, 64, 3), 4)
    report = P.load_into(model, path, model_name="efficientnetb0")
    assert any("variance = std**2" in n for n in report.notes) and report.fresh == ["predictions"]
    features = keras.Model(model.inputs, model.get_layer("top_activation").output)
    x = np.random.default_rng(6).uniform(0, 1, (2, 64, 64, 3)).astype("float32")
    want = np.asarray(ref(x * 255.0, training=False))   # eager calls: no predict() graph to trace
    got = np.asarray(features([x], training=False))
    assert float(np.abs(got - want).max()) <= 1e-4 * float(np.abs(want).max())


def test_imagenet_reads_the_keras_cache_and_never_downloads(tmp_path, monkeypatch):
    """--weights imagenet: the file name is the one Keras's own constructor asks for (MobileNetV2's
    depends on the input size); missing, one line says what to place where."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(P.WeightsError) as e:
        P.imagenet_file("mobilenetv2", include_top=False, input_shape=(160, 160, 3))
    msg = str(e.value)
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_160_no_top.h5" in msg and "\n" not in msg
    assert str(tmp_path / "models") in msg and "storage.googleapis.com" in msg
    (tmp_path / "models").mkdir()
    placed = tmp_path / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"
    placed.write_bytes(b"")
    assert P.imagenet_file("mobilenetv2") == placed
    assert P.default_preprocessing("imagenet", "mobilenetv2") == "tf"


@pytest.mark.slow
def test_train_finetune_then_every_command(tmp_path, invoke):
    """`kerascnn train mobilenetv3small` from a local _notop file with --freeze-epochs/--unfreeze, then
    evaluate, predict, export (and predict from the export), summary: the same probabilities."""
    from test_weights_torch import _photos

    ref = keras.applications.MobileNetV3Small(weights=None, include_top=False, input_shape=(32, 32, 3))
    _randomise(ref, 1)
    path = _save_legacy(ref, tmp_path / "notop.h5")
    data, run = _photos(tmp_path / "photos"), tmp_path / "run"
    r = invoke("train", "mobilenetv3small", "--weights", path, "--data", data, "--image-size", "32",
               "--freeze-epochs", "1", "--unfreeze", "5", "--epochs", "2", "--batch-size", "4", "--precision",
               "float32", "--run-dir", run, "-q")
    assert r.exit_code == 0, r.output
    assert "new (not from the file): conv_2, logits; preprocessing raw" in r.output
    assert "epoch 2: unfroze 7 layers (81 stay frozen)" in r.output, r.output   # the head: 2, the backbone: its last 5
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["finetune"]["phase1_trainable"] == ["conv_2", "logits"] and cfg["weights_preprocessing"] == "raw"
    img = next(iter(sorted((data / "cats").iterdir())))
    a = invoke("predict", run, img, "--top-k", "2", "--format", "json")
    assert a.exit_code == 0, a.output
    assert invoke("export", run, "--out", tmp_path / "sm").exit_code == 0
    b = invoke("predict", tmp_path / "sm", img, "--top-k", "2", "--format", "json")
    assert b.exit_code == 0, b.output
    pa, pb = json.loads(a.output)[0]["top"], json.loads(b.output)[0]["top"]
    assert [t["index"] for t in pa] == [t["index"] for t in pb]
    np.testing.assert_allclose([t["probability"] for t in pa], [t["probability"] for t in pb], atol=1e-5)
    r = invoke("evaluate", run, "--data", data, "--format", "json")
    assert r.exit_code == 0 and json.loads(r.output)["images"] == 2, r.output
    r = invoke("summary", "mobilenetv3small", "--input-shape", "32,32,3", "--classes", "2")
    assert r.exit_code == 0 and "Keras count_params() agrees with the arithmetic on every layer: yes" in r.output
