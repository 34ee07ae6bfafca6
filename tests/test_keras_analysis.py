"""`kerascnn summary model.keras` / `kerascnn.analyze(model)`: any Keras model through the rules."""
import json
from pathlib import Path

import numpy as np
import pytest

import kerascnn
from kerascnn.analysis import walk


@pytest.fixture(scope="module")
def toy():
    """Branches, Add, Concatenate, Multiply, a nested Sequential, a shared layer, preprocessing
    layers and up-sampling."""
    import keras

    inp = keras.Input((32, 32, 3), name="img")
    x = keras.layers.Rescaling(1 / 255, name="scale")(inp)
    x = keras.layers.Normalization(mean=[0.5, 0.4, 0.3], variance=[1, 1, 1], name="norm")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", name="stem")(x)
    a = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="a")(x)
    b = keras.layers.Conv2D(16, 5, padding="same", name="b")(x)
    s = keras.layers.Add(name="add")([a, b])
    g = keras.layers.Multiply(name="gate")([s, keras.layers.Activation("sigmoid", name="sig")(s)])
    c = keras.layers.Concatenate(name="cat")([g, x])
    y = keras.layers.ZeroPadding2D(((0, 1), (0, 1)), name="pad")(c)
    y = keras.layers.MaxPooling2D(3, 2, name="pool")(y)
    inner = keras.Sequential([keras.Input((16, 16, 32)), keras.layers.DepthwiseConv2D(3, padding="same", name="dw"),
                              keras.layers.Conv2D(8, 1, use_bias=False, name="pw"),
                              keras.layers.BatchNormalization(name="bn")], name="inner")
    y = inner(y)
    shared = keras.layers.Conv2D(8, 1, name="shared")
    y = shared(shared(y))
    top = keras.layers.GlobalAveragePooling2D(name="gap")(y)
    up = keras.layers.UpSampling2D(name="up")(y)
    top2 = keras.layers.GlobalMaxPooling2D(name="gmp")(up)
    out = keras.layers.Dense(10, name="fc")(keras.layers.Concatenate(name="heads")([top, top2]))
    return keras.Model(inp, out, name="toy")


def test_params_equal_keras_on_every_layer(toy):
    r = kerascnn.analyze(toy)
    assert r.total_params == toy.count_params() == 448 + 2320 + 6416 + (320 + 256 + 32) + 72 + 170
    rows = {l.name: l for l in walk(r.layers)}
    for name, count in r.keras_counts.items():
        assert rows[name].params == count, name
    assert rows["norm"].params == 0  # mean and variance given as constants: no weights (EfficientNet's has 7)
    assert rows["bn"].params == 32 and rows["bn"].trainable_params == 16
    assert rows["shared"].params == 72  # a shared layer's weights are counted once ...
    again = rows["shared (call 2)"]
    assert again.params == 0 and again.macs == rows["shared"].macs == 16 * 16 * 8 * 8
    assert r.unknown == [] and r.keras_agrees


def test_macs_and_receptive_field_through_the_graph(toy):
    rows = {l.name: l for l in walk(kerascnn.analyze(toy).layers)}
    assert rows["stem"].macs == 32 * 32 * 16 * 27
    assert rows["b"].macs == 32 * 32 * 16 * 25 * 16
    assert rows["dw"].macs == 16 * 16 * 32 * 9 and rows["pw"].macs == 16 * 16 * 8 * 32
    assert (rows["a"].receptive_field, rows["b"].receptive_field) == (5, 7)
    assert rows["add"].receptive_field == 7 and rows["cat"].receptive_field == 7  # max over the inputs
    assert rows["pool"].output_shape == (16, 16, 32)
    assert (rows["pool"].receptive_field, rows["pool"].jump) == (9, 2)
    assert rows["inner"].children[0].name == "dw" and rows["inner"].receptive_field == 13
    assert rows["gap"].receptive_field == 13 + 15 * 2
    # nearest up-sampling: each output copies one input, the field stays, the jump halves
    assert (rows["up"].receptive_field, rows["up"].jump) == (13, 1)
    assert rows["gmp"].receptive_field == 13 + 31 * 1 and rows["heads"].receptive_field == 44


def test_zoo_models_read_back_from_keras_equal_the_spec_analysis():
    for name, shape, opts in [("convnet", None, {}), ("resnet18", (32, 32, 3), {"small_input": True}),
                              ("googlenet", (64, 64, 3), {})]:
        from kerascnn.registry import get_entry

        entry = get_entry(name)
        want = entry.analyze(shape, 10, **opts)
        got = kerascnn.analyze(entry.build(shape, 10, **opts))
        assert (got.total_params, got.macs, got.receptive_field) == (want.total_params, want.macs,
                                                                     want.receptive_field), name
        assert not got.unknown


def test_analyze_python_api_for_names_and_specs():
    assert kerascnn.analyze("vgg16").macs == 15_470_264_320
    r = kerascnn.analyze("conv5-10s1p2", input_shape=(32, 32, 3))
    assert (r.total_params, r.macs) == (760, 768_000)


def test_summary_of_a_keras_file(invoke, toy, tmp_path):
    """A .keras file is analysed from its config.json (no Keras model built); --keras adds Keras's
    own summary and per-layer counts; --input-shape analyses it at another size."""
    path = tmp_path / "toy.keras"
    toy.save(path)
    r = invoke("summary", path)
    assert r.exit_code == 0, r.output
    assert "Keras model.summary()" not in r.output and "Not analysed" not in r.output
    assert f"Total params: {toy.count_params():,}" in r.output
    r = invoke("summary", path, "--keras", "--depth", "1")
    assert "Keras model.summary()" in r.output and "agrees with the arithmetic on every layer: yes" in r.output
    d = json.loads(invoke("summary", path, "--format", "json").output)
    assert d["total_params"] == toy.count_params() and d["not_analysed"] == [] and "keras" not in d
    big = json.loads(invoke("summary", path, "--format", "json", "--input-shape", "64,64,3").output)
    assert big["input_shape"] == [64, 64, 3] and big["total_params"] == toy.count_params()
    fc = 16 * 10   # every convolution sees 4x the pixels; the dense head after global pooling does not
    assert big["macs"] - fc == 4 * (d["macs"] - fc)
    bad = invoke("summary", tmp_path / "missing.keras")
    assert bad.exit_code == 2 and "no such model file" in bad.output
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    bad = invoke("summary", tmp_path / "junk.keras")
    assert bad.exit_code != 0 and "not a Keras 3 .keras file" in bad.output and "Traceback" not in bad.output


def _saved_and_read(model, tmp_path):
    from kerascnn.keras_analysis import analyze_file

    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    return analyze_file(str(path))[0]


def test_keras_same_padding_and_layers_with_weights_but_no_rule(tmp_path):
    """Keras's "same" at stride 2 on an even input pads (0, 1): it fits, no note. A PReLU (weights,
    no rule) is listed by name and class; its 64 weights are Keras's own count_params(), so the totals
    equal Keras's; the receptive field after it is '?' (never guessed). From a file, Keras builds the
    model from its config for that layer's count (no weights read)."""
    import keras

    m = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, strides=2, padding="same", name="c"),
                          keras.layers.PReLU(name="p"), keras.layers.Flatten(name="f"), keras.layers.Dense(2, name="d")],
                         name="prelu")
    for r in (kerascnn.analyze(m), _saved_and_read(m, tmp_path)):
        c, p, f = r.layers[:3]
        assert (c.output_shape, c.note, c.receptive_field, c.jump, c.macs) == ((4, 4, 4), "", 3, 2, 4 * 4 * 4 * 27)
        assert r.unknown == [("p", "PReLU")] and (p.params, p.trainable_params) == (64, 64)
        assert r.total_params == m.count_params() == 112 + 64 + 130 and r.keras_agrees
        assert f.receptive_field == "?" and "Not analysed (1 layers without a rule" in str(r)


def test_batchnorm_without_scale_or_center_and_frozen_layers():
    """InceptionV3's BatchNormalization(scale=False): C trainable (beta) + 2C moving statistics;
    a frozen layer (trainable=False) counts its weights as non-trainable, as Keras does."""
    import keras

    inp = keras.Input((8, 8, 16))
    x = keras.layers.BatchNormalization(scale=False, name="bn1")(inp)
    x = keras.layers.BatchNormalization(center=False, scale=False, name="bn2")(x)
    x = keras.layers.LayerNormalization(center=False, name="ln")(x)
    frozen = keras.layers.Conv2D(4, 3, name="frozen")
    frozen.trainable = False
    m = keras.Model(inp, frozen(x))
    r = kerascnn.analyze(m)
    rows = {l.name: l for l in r.layers}
    assert (rows["bn1"].params, rows["bn1"].trainable_params) == (48, 16)
    assert (rows["bn2"].params, rows["bn2"].trainable_params) == (32, 0)
    assert (rows["ln"].params, rows["frozen"].trainable_params) == (16, 0)
    trainable = int(sum(np.prod(w.shape) for w in m.trainable_weights))
    assert (r.total_params, r.trainable_params) == (m.count_params(), trainable) == (48 + 32 + 16 + 580, 16 + 16)


# keras.applications, weights=None, saved as .keras and read back from config.json alone: parameters equal
# Keras's count_params() (layer by layer), multiply-adds equal fvcore's count on the PyTorch twin recorded
# by benchmarks/fvcore_twins.py in tests/fixtures/fvcore_twins.json (the whole sweep:
# benchmarks/keras_applications.py). Chosen for what each brings: MobileNetV3Small (input of unknown size,
# Rescaling, hard-swish, SE), InceptionV3 (BatchNorm scale=False), ConvNeXtTiny (LayerScale, nested
# Sequential, keras.ops Add), EfficientNetB0 (Normalization, SE reshape). To stay fast the files hold
# config.json as model.save writes it (serialize_keras_object) and no weights, which the reader never opens.
TWINS = json.loads((Path(__file__).parent / "fixtures" / "fvcore_twins.json").read_text())["twins"]
APPLICATIONS = ["MobileNetV3Small", "InceptionV3", "ConvNeXtTiny", "EfficientNetB0"]


def _save_config_only(model, path):
    import zipfile

    import keras

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": keras.__version__}))
        z.writestr("config.json", json.dumps(keras.saving.serialize_keras_object(model)))


@pytest.fixture(scope="module")
def saved_applications(tmp_path_factory):
    """name -> (path, Keras's total params, trainable params, {layer: count_params()})."""
    import keras

    out = {}
    for name in APPLICATIONS:
        model = getattr(keras.applications, name)(weights=None)
        path = tmp_path_factory.mktemp("apps") / f"{name}.keras"
        _save_config_only(model, path)
        trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
        counts = {layer.name: layer.count_params() for layer in model.layers if layer.__class__.__name__ != "InputLayer"}
        out[name] = (path, model.count_params(), trainable, counts)
        del model
        keras.backend.clear_session()
    return out


@pytest.mark.parametrize("name", APPLICATIONS)
def test_keras_applications_from_config_equal_keras_and_fvcore(name, saved_applications):
    from kerascnn.keras_analysis import analyze_file

    path, params, trainable, counts = saved_applications[name]
    shape = (224, 224, 3) if name == "MobileNetV3Small" else None   # saved with an input of unknown size
    r, model = analyze_file(str(path), shape)
    assert model is None and not r.unknown and not r.shape_mismatches   # no Keras needed; tensor shapes agree
    assert (r.total_params, r.trainable_params) == (params, trainable)
    rows = {l.name: l for l in walk(r.layers)}
    assert all(rows[n].params == c for n, c in counts.items()), [n for n, c in counts.items() if rows[n].params != c]
    if name in TWINS:
        assert r.input_shape == tuple(TWINS[name]["input"]) and r.macs == TWINS[name]["fvcore_macs"]


def test_a_keras_file_is_analysed_without_tensorflow(saved_applications):
    """The CLI on a .keras file in a process where TensorFlow cannot be imported: config.json only.
    The input of unknown size needs --input-shape (a one-line error without it)."""
    from conftest import run_without_tensorflow

    path, params = saved_applications["MobileNetV3Small"][:2]
    r = run_without_tensorflow("summary", path, "--input-shape", "224,224,3", "--format", "json")
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads(r.stdout)
    assert (d["total_params"], d["macs"]) == (params, TWINS["MobileNetV3Small"]["fvcore_macs"])
    r = run_without_tensorflow("summary", path)
    assert r.returncode == 2 and "unknown size ?x?x3" in r.stderr and "--input-shape 224,224,3" in r.stderr


def test_a_keras_file_at_another_input_size_with_keras_side_by_side(saved_applications):
    """--input-shape with --keras: Keras builds the model from the config at that size (no weights) and
    agrees with the arithmetic on every layer."""
    from kerascnn.keras_analysis import analyze_file

    path = saved_applications["MobileNetV3Small"][0]
    small, model = analyze_file(str(path), (160, 160, 3), use_keras=True)
    assert model is not None and small.keras_agrees and small.keras_total == small.total_params
    big, _ = analyze_file(str(path), (224, 224, 3))
    assert small.total_params == big.total_params and small.macs < big.macs
    assert small.layers[-1].output_shape == (1000,)


def test_a_vector_input_model_file_and_its_values_from_one_row(invoke, tmp_path):
    """An MLP saved with a vector input: analysed from its config (no receptive field), and `values`
    reads a one-row grid as the vector it takes."""
    import keras

    m = keras.Sequential([keras.Input((5,)), keras.layers.Dense(2, name="d")], name="mlp")
    m.get_layer("d").set_weights([np.arange(10, dtype=np.float32).reshape(5, 2), np.zeros(2, np.float32)])
    m.save(tmp_path / "mlp.keras")
    r = _saved_and_read(m, tmp_path)
    assert (r.input_shape, r.total_params, r.macs, r.receptive_field) == ((5,), 12, 10, None)
    out = invoke("values", tmp_path / "mlp.keras", "--input", "1,2,-1,1,-3", "--format", "json")
    d = json.loads(out.output)
    x = np.array([1, 2, -1, 1, -3])
    assert d["input_shape"] == [5] and d["layers"][-1]["values"] == (x @ np.arange(10).reshape(5, 2)).tolist()
