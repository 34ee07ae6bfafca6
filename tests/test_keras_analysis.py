"""`kerascnn summary model.keras` / `kerascnn.analyze(model)`: any Keras model through the rules."""
import json

import numpy as np
import pytest

import kerascnn
from kerascnn.analysis import walk


@pytest.fixture(scope="module")
def toy():
    """Branches, Add, Concatenate, Multiply, a nested Sequential, a shared layer, preprocessing
    layers and one layer without a rule (UpSampling2D)."""
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
    assert r.unknown == [("up", "UpSampling2D")] and r.keras_agrees


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
    assert rows["up"].receptive_field == "?" and rows["gmp"].receptive_field == "?"  # never guessed


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
    path = tmp_path / "toy.keras"
    toy.save(path)
    r = invoke("summary", path, "--no-keras")
    assert r.exit_code == 0, r.output
    assert "Not analysed (1 layers without a rule" in r.output and "up (UpSampling2D)" in r.output
    assert "agrees with the arithmetic on every analysed layer (1 not analysed): yes" in r.output
    d = json.loads(invoke("summary", path, "--format", "json").output)
    assert d["total_params"] == d["keras"]["total_params"] == toy.count_params()
    assert d["not_analysed"] == [{"name": "up", "class": "UpSampling2D"}]
    bad = invoke("summary", tmp_path / "missing.keras")
    assert bad.exit_code == 2 and "no such model file" in bad.output


# keras.applications, weights=None: parameters exactly Keras's; multiply-adds within 2% of the published
# figure. Sources: VGG16 torchvision docs 15.47 GFLOPS (= MACs); ResNet50 (v1, stride on the 1x1 conv as in
# Keras) He et al. 2016, Table 1, 3.8e9 "FLOPs" (multiply-adds); MobileNetV2 Sandler et al. 2018, Table 4
# and the Keras/TF-Slim model card, 300M MACs; DenseNet121 torchvision docs 2.83 GFLOPS (the often quoted
# 2.9 G is 2.3% above our count); EfficientNetB0 Tan & Le 2019, Table 2, 0.39B FLOPs (multiply-adds).
APPLICATIONS = [("VGG16", 138_357_544, 15.47e9), ("ResNet50", 25_636_712, 3.8e9),
                ("MobileNetV2", 3_538_984, 300e6), ("DenseNet121", 8_062_504, 2.83e9),
                ("EfficientNetB0", 5_330_571, 0.39e9)]


@pytest.mark.parametrize("name,params,published_macs", APPLICATIONS)
def test_keras_applications(name, params, published_macs):
    import keras

    model = getattr(keras.applications, name)(weights=None)
    r = kerascnn.analyze(model)
    assert not r.unknown and r.keras_agrees
    assert r.total_params == model.count_params() == params
    assert r.trainable_params == int(sum(np.prod(w.shape) for w in model.trainable_weights))
    assert abs(r.macs - published_macs) / published_macs < 0.02


def test_keras_same_padding_and_layers_with_weights_but_no_rule():
    """Keras's "same" at stride 2 on an even input pads (0, 1): it fits, no note. A PReLU (weights,
    no rule) is listed and its 64 weights are reported as not counted, not guessed."""
    import keras

    m = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, strides=2, padding="same", name="c"),
                          keras.layers.PReLU(name="p"), keras.layers.Flatten(name="f"), keras.layers.Dense(2, name="d")])
    r = kerascnn.analyze(m)
    c = r.layers[0]
    assert (c.output_shape, c.note, c.receptive_field, c.jump, c.macs) == ((4, 4, 4), "", 3, 2, 4 * 4 * 4 * 27)
    assert r.unknown == [("p", "PReLU")] and r.total_params == 112 + 130 and m.count_params() == 112 + 64 + 130
    assert "Keras counts 306 params in all: 64 of them in the layers not analysed" in str(r)
