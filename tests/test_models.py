"""The zoo: published parameter counts and MACs, and Keras agreeing with the arithmetic layer by layer."""
import numpy as np
import pytest

from kerascnn.analysis import walk
from kerascnn.errors import ConfigError, GeometryError, ModelNotFound
from kerascnn.registry import build_model, get_entry, list_models, parse_options

def _published():
    """(model, Published record) for every published figure the registry records keep."""
    return [(name, pub) for name in list_models(kind="specs") for pub in get_entry(name).published]


PUBLISHED = _published()


@pytest.mark.parametrize("name,pub", PUBLISHED, ids=[f"{n}-{i}" for i, (n, _) in enumerate(PUBLISHED)])
def test_published_figures_from_the_model_records(name, pub):
    """Parameters exactly, multiply-adds within 2% of the figure (published MACs carry 2-3 digits)."""
    assert pub.source and (pub.params or pub.trainable_params or pub.macs)
    r = get_entry(name).analyze(pub.input_shape, pub.num_classes, **dict(pub.options))
    if pub.params is not None:
        assert r.total_params == pub.params
    if pub.trainable_params is not None:
        assert r.trainable_params == pub.trainable_params
    if pub.macs is not None:
        assert abs(r.macs - pub.macs) / pub.macs < 0.02


def test_records_cover_the_zoo_and_are_frozen():
    import dataclasses

    from kerascnn.registry import ModelCfg, model_cfg

    with_figures = {n for n, _ in PUBLISHED}
    assert set(list_models(kind="specs")) - with_figures == {"nin"}  # NiN's paper gives no parameter count
    assert all(get_entry(n).published for n in list_models(kind="keras"))   # recorded (tests/test_keras_apps.py)
    assert sum(p.macs is not None for _, p in PUBLISHED) == 12
    cfg = model_cfg("vgg16")
    assert isinstance(cfg, ModelCfg) and cfg.default_input == (224, 224, 3) and cfg.year == 2014
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.year = 2015


def test_register_model_returns_the_spec_function_unchanged():
    from kerascnn.models.resnet import resnet18
    from kerascnn.models.vgg import vgg16
    from kerascnn.specs import Conv, Residual

    specs = resnet18((32, 32, 3), 10, small_input=True)
    assert isinstance(specs, list) and isinstance(specs[0], Conv) and isinstance(specs[3], Residual)
    assert get_entry("resnet18").spec_fn is resnet18
    assert sum(isinstance(s, Conv) for s in vgg16((224, 224, 3), 1000)) == 13


def test_kerascnn_build_is_the_keras_builder():
    import kerascnn

    model = kerascnn.build("lenet5", input_shape=(28, 28, 1), num_classes=10)
    assert model.count_params() == 61_706 and model.name == "lenet5"


# GoogLeNet, Szegedy et al. Table 1: (input channels, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj)
INCEPTION_TABLE_1 = {
    "inception_3a": (192, 64, 96, 128, 16, 32, 32), "inception_3b": (256, 128, 128, 192, 32, 96, 64),
    "inception_4a": (480, 192, 96, 208, 16, 48, 64), "inception_4b": (512, 160, 112, 224, 24, 64, 64),
    "inception_4c": (512, 128, 128, 256, 24, 64, 64), "inception_4d": (512, 112, 144, 288, 32, 64, 64),
    "inception_4e": (528, 256, 160, 320, 32, 128, 128), "inception_5a": (832, 256, 160, 320, 32, 128, 128),
    "inception_5b": (832, 384, 192, 384, 48, 128, 128),
}


def test_googlenet_blocks_follow_table_1_filter_counts():
    """Each Inception block has exactly the weights Table 1's filter columns imply (plus biases).
    (The table's own "params" column disagrees with its filter columns for several rows, e.g. 4c:
    463K listed, 509K implied, so the filter columns are the reference.)"""
    rows = {l.name: l for l in get_entry("googlenet").analyze().layers}
    for name, (c, n1, r3, n3, r5, n5, pp) in INCEPTION_TABLE_1.items():
        weights = c * n1 + c * r3 + 9 * r3 * n3 + c * r5 + 25 * r5 * n5 + c * pp
        assert rows[name].params == weights + (n1 + r3 + n3 + r5 + n5 + pp), name
        assert rows[name].output_shape[-1] == n1 + n3 + n5 + pp
    assert get_entry("googlenet").analyze().total_params == 6_998_552


def test_convnet_output_shapes_match_the_lecture():
    r = get_entry("convnet").analyze()
    assert [l.output_shape for l in r.layers[:5]] == [(26, 26, 32), (13, 13, 32), (11, 11, 64), (5, 5, 64), (1600,)]
    assert [(l.name, l.params) for l in r.layers[:3]] == [("conv2d", 320), ("max_pooling2d", 0), ("conv2d_1", 18_496)]


def test_registry_lists_every_required_model():
    required = {"mlp", "convnet", "lenet5", "alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn",
                "vgg16_bn", "vgg19_bn", "nin", "googlenet", "resnet18", "resnet34", "resnet50"}
    assert required <= set(list_models())
    assert list_models("vgg1?") == ["vgg11", "vgg13", "vgg16", "vgg19"]
    with pytest.raises(ModelNotFound, match="did you mean resnet18"):
        get_entry("resnet81")


def _keras_rows(model):
    rows = {}
    for layer in model.layers:
        rows[layer.name] = layer
        for inner in getattr(layer, "inner_layers", []):
            rows[inner.name] = inner
    return rows


@pytest.mark.parametrize("name", list_models(kind="specs"))
def test_keras_count_params_equals_analysis_for_every_layer(name):
    entry = get_entry(name)
    report = entry.analyze()
    model = entry.build()
    rows = _keras_rows(model)
    for stats in walk(report.layers):
        layer = rows[stats.name]
        assert layer.count_params() == stats.params, stats.name
        trainable = int(sum(np.prod(w.shape) for w in layer.trainable_weights))
        assert trainable == stats.trainable_params, stats.name
    for layer in model.layers:
        if layer.name in {s.name for s in report.layers}:
            assert tuple(layer.output.shape[1:]) == report.layers[[s.name for s in report.layers].index(layer.name)].output_shape
        else:  # explicit zero padding in front of a convolution
            assert layer.name.endswith("_pad") and layer.count_params() == 0
    assert model.count_params() == report.total_params
    assert model.output_shape == (None, entry.num_classes)


@pytest.mark.parametrize("name,shape,opts", [
    ("googlenet", (64, 64, 3), {}), ("resnet18", (32, 32, 3), {"small_input": True}),
    ("resnet50", (32, 32, 3), {"small_input": True}), ("lenet5", (28, 28, 1), {"variant": "modern", "batch_norm": True}),
])
def test_custom_blocks_round_trip_through_keras_files(tmp_path, name, shape, opts):
    import keras

    model = build_model(name, shape, 10, **opts)
    x = np.random.default_rng(0).random((3,) + shape, dtype=np.float32)
    model.predict(x, verbose=0)  # builds any lazily created state
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]


def test_small_input_stem_and_grouped_alexnet_forward():
    m = build_model("resnet18", (32, 32, 3), 10, small_input=True)
    assert m.get_layer("conv1_conv").kernel.shape == (3, 3, 3, 64)
    assert m.get_layer("conv5_block2").output.shape[1:] == (4, 4, 512)
    m = build_model("alexnet", (227, 227, 3), 10, grouped=True)
    assert m.get_layer("conv2").kernel.shape == (5, 5, 48, 256)


def test_build_errors_are_one_line_and_name_the_layer():
    with pytest.raises(GeometryError) as e:
        build_model("vgg16", (28, 28, 1), 10)
    assert "\n" not in str(e.value) and "block5_pool" in str(e.value) and "32x32x1" in str(e.value)
    with pytest.raises(ConfigError, match="no option"):
        build_model("resnet18", None, 10, wings=True)
    with pytest.raises(ConfigError, match="true or false"):
        parse_options(get_entry("resnet18"), ["small_input=maybe"])
    assert parse_options(get_entry("resnet18"), ["small_input=yes"]) == {"small_input": True}


def test_list_json_carries_the_published_figures_and_sources(invoke):
    import json

    r = invoke("list", "alexnet", "--format", "json")
    assert r.exit_code == 0, r.output
    published = json.loads(r.output)[0]["published"]
    assert published[1]["options"] == {"grouped": True} and published[1]["macs"] == 724_000_000
    assert "Sze et al." in published[1]["source"]


def test_model_ref_is_one_typed_record_for_names_and_specs():
    from kerascnn.errors import ConfigError, GeometryError, ModelNotFound
    from kerascnn.registry import ModelRef, model_ref

    ref = model_ref("resnet18", ["small_input=true"], (32, 32, 3), 10)
    assert isinstance(ref, ModelRef) and not ref.is_spec
    assert (ref.name, ref.input_shape, ref.num_classes, ref.options) == ("resnet18", (32, 32, 3), 10,
                                                                         {"small_input": True})
    assert model_ref("resnet18", {"small_input": True}, (32, 32, 3), 10) == ref      # typed options too
    # torchvision 11,689,512 - fc (513,000 - 5,130) - conv1 7x7 -> 3x3 (7,680) + BatchNorm statistics 9,600
    assert ref.analyze().total_params == 11_183_562 and len(ref.specs()) == len(ref.analyze().layers)
    assert model_ref("lenet5").input_shape == (28, 28, 1) and model_ref("lenet5").num_classes == 10
    spec = model_ref("conv3-8, relu, gap, fc10", input_shape=(8, 8, 1), spec=True)
    assert spec.is_spec and spec.name == "spec" and spec.analyze().total_params == 8 * 9 + 8 + 8 * 10 + 10
    with pytest.raises(ModelNotFound, match="did you mean resnet18"):
        model_ref("resnt18", spec=True)
    with pytest.raises(ModelNotFound):
        model_ref("conv3-8")                          # a spec only where the command takes one
    with pytest.raises(ConfigError, match="no option 'depth'"):
        model_ref("resnet18", ["depth=3"])
    with pytest.raises(ConfigError, match="applies to registered models"):
        model_ref("conv3-8", ["a=1"], spec=True)
    with pytest.raises(GeometryError, match="smallest input that works is 6x6x1"):  # 6 -> conv5 -> 2 -> pool -> 1
        model_ref("conv5-4, maxpool2", input_shape=(4, 4, 1), spec=True).analyze()
