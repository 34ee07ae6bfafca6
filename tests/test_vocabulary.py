"""The whole vocabulary: params, multiply-adds and receptive field of every layer kind, by hand,
and Keras's own count_params() agreeing on every row (one small model per test)."""
from fractions import Fraction

import pytest

from kerascnn import analysis, specs as S
from kerascnn.errors import ConfigError, GeometryError, SpecError
from kerascnn.rules import rule_for
from kerascnn.speclang import is_spec_like, parse, to_text


def keras_agrees(specs, shape):
    """Build the model and compare every analysis row (blocks and their layers) with Keras by name."""
    from kerascnn.keras_build import build_sequential
    from kerascnn.layers import flat_layers

    report = analysis.analyze(specs, shape)
    model = build_sequential(specs, shape)
    counts = {l.name: l.count_params() for l in flat_layers(model)}
    rows = list(analysis.walk(report.layers))
    assert [(r.name, r.params) for r in rows] == [(r.name, counts[r.name]) for r in rows]
    assert model.count_params() == report.total_params
    assert tuple(model.output_shape[1:]) == report.output_shape
    return report


def one(text, shape):
    return analysis.analyze(parse(text), shape).layers[0]


def test_dilation_field_is_1_plus_d_times_k_minus_1_per_layer():
    row = one("conv3-8d2", (16, 16, 3))
    assert row.output_shape == (12, 12, 8)               # (16 - 5 + 0)/1 + 1
    assert row.params == 3 * 3 * 3 * 8 + 8               # dilation adds no weights
    assert row.macs == 12 * 12 * 8 * 27
    assert row.receptive_field == 1 + 2 * (3 - 1)
    r = analysis.analyze(parse("3*conv3-4p2d2"), (20, 20, 1))
    assert [l.receptive_field for l in r.layers] == [5, 9, 13]   # 1 + L d (K-1)
    assert r.layers[-1].output_shape == (20, 20, 4)
    keras_agrees(parse("conv3-8d2, conv3-4p2d2, dwconv3p2d2, sepconv3-4p2d2"), (16, 16, 3))


def test_rectangular_kernels_and_strides():
    row = one("conv1x7-16p0x3", (8, 8, 4))
    assert row.output_shape == (8, 8, 16)
    assert (row.params, row.macs) == (1 * 7 * 4 * 16 + 16, 8 * 8 * 16 * 7 * 4)
    assert (row.receptive_field, row.jump) == ((1, 7), 1)
    row = one("conv3-4s3x2", (9, 8, 1))
    assert row.output_shape == (3, 3, 4) and "(8 - 3 + 2*0)/2 + 1 = 3.5" in row.note
    assert (row.receptive_field, row.jump) == (3, (3, 2))
    r = analysis.analyze(parse("conv7x1-4p3x0, conv1x7-4p0x3"), (9, 9, 1))
    assert r.layers[-1].receptive_field == 7          # 7x1 then 1x7 sees a 7x7 patch (Inception v3)
    keras_agrees(parse("conv1x7-16p0x3, conv3-4s3x2, maxpool3x1s2x1, conv7x1-4p3x0"), (9, 8, 4))


def test_zero_padding_layer_grows_the_grid_and_moves_the_field_start():
    r = analysis.analyze(parse("zeropad1, conv3-2, zeropad0:1x2:0"), (5, 5, 2))
    assert [l.output_shape for l in r.layers] == [(7, 7, 2), (5, 5, 2), (6, 7, 2)]
    assert [l.params for l in r.layers] == [0, 3 * 3 * 2 * 2 + 2, 0]
    assert rule_for(S.ZeroPad(1)).field(1, 1, 0.0) == ((1, 1), (1, 1), (-1.0, -1.0))
    keras_agrees(parse("zeropad1, conv3-2, zeropad0:1x2:0"), (5, 5, 2))


def test_depthwise_and_separable_follow_mobilenets_cost_arithmetic():
    """MobileNet (Howard et al. 2017), eq. 4-5: depthwise D_K^2 M D_F^2, pointwise M N D_F^2, and the
    ratio to a standard convolution 1/N + 1/D_K^2."""
    dk, m, n, df = 3, 32, 64, 112
    dw = one("dwconv3p1nb", (df, df, m))
    assert (dw.output_shape, dw.params, dw.macs) == ((df, df, m), dk * dk * m, dk * dk * m * df * df)
    sep = one("sepconv3-64p1nb", (df, df, m))
    assert sep.params == dk * dk * m + m * n
    assert sep.macs == dk * dk * m * df * df + m * n * df * df == 29_302_784
    std = one("conv3-64p1nb", (df, df, m))
    assert Fraction(sep.macs, std.macs) == Fraction(1, n) + Fraction(1, dk * dk)
    dw2 = one("dwconv3s2p1m2", (8, 8, 3))
    assert (dw2.output_shape, dw2.params) == ((4, 4, 6), 3 * 3 * 6 + 6)
    keras_agrees(parse("dwconv3p1nb, bn, relu, conv1-8nb, sepconv3-16s2p1, dwconv3s2p1m2, sepconv5-4samem2nb"),
                 (12, 12, 4))


def test_normalizations_dropouts_and_activations():
    r = keras_agrees(parse("conv3-8p1, ln, gn4, bn, sdropout0.2, leakyrelu, elu, gelu, leakyrelu0.2, dropout0.5"),
                     (6, 6, 3))
    assert [(l.cls, l.params, l.trainable_params) for l in r.layers[1:4]] == [
        ("LayerNormalization", 16, 16), ("GroupNormalization", 16, 16), ("BatchNormalization", 32, 16)]
    assert sum(l.params for l in r.layers[4:]) == 0
    with pytest.raises(ConfigError, match="groups=3 must divide the 8 channels"):
        analysis.analyze(parse("conv1-8, gn3"), (4, 4, 1))


def test_repeated_group_expands_in_order():
    specs = parse("2*(conv3-64p1,bn,relu), maxpool2")
    assert [type(s).__name__ for s in specs] == ["Conv", "BatchNorm", "Activation"] * 2 + ["Pool"]
    r = analysis.analyze(specs, (8, 8, 3))
    assert r.total_params == (27 * 64 + 64 + 256) + (9 * 64 * 64 + 64 + 256)


def test_residual_basic_block_in_the_spec_language_equals_resblock():
    text = "res(conv3-16p1nb,bn,relu,conv3-16p1nb,bn), relu"
    r = keras_agrees(parse(text), (8, 8, 16))
    block = r.layers[0]
    assert block.output_shape == (8, 8, 16)
    assert block.params == 2 * (3 * 3 * 16 * 16) + 2 * (4 * 16)
    assert block.macs == 2 * (8 * 8 * 16 * 3 * 3 * 16)
    assert block.receptive_field == 5
    ref = analysis.analyze(parse("resblock16"), (8, 8, 16)).layers[0]
    assert (ref.params, ref.macs, ref.receptive_field) == (block.params, block.macs, block.receptive_field)
    down = keras_agrees(parse("res(conv3-32s2p1nb,bn,relu,conv3-32p1nb,bn | conv1-32s2nb,bn), relu"), (8, 8, 16))
    ref = analysis.analyze(parse("resblock32s2proj"), (8, 8, 16)).layers[0]
    assert (down.layers[0].params, down.layers[0].macs, down.output_shape) == (ref.params, ref.macs, (4, 4, 32))
    with pytest.raises(GeometryError, match="needs a projection"):
        analysis.analyze(parse("res(conv3-32s2p1)"), (8, 8, 16))


def test_inception_module_on_the_command_line_is_googlenets_3a():
    """Szegedy et al. 2014, Table 1, inception (3a) at 28x28x192: 256 channels, ~128M multiply-adds."""
    text = ("cat(conv1-64,relu | conv1-96,relu,conv3-128p1,relu | conv1-16,relu,conv5-32p2,relu"
            " | maxpool3s1p1,conv1-32,relu)")
    block = keras_agrees(parse(text), (28, 28, 192)).layers[0]
    ref = analysis.analyze(parse("inception64-96-128-16-32-32"), (28, 28, 192)).layers[0]
    assert block.output_shape == ref.output_shape == (28, 28, 256)
    assert block.params == ref.params == 163_696
    assert block.macs == ref.macs == 28 * 28 * (192 * 64 + 192 * 96 + 9 * 96 * 128 + 192 * 16 + 25 * 16 * 32
                                                 + 192 * 32) == 128_049_152
    assert block.receptive_field == ref.receptive_field == 5


def test_every_kind_round_trips_through_its_spec_syntax():
    text = ("conv1x7-64p0x3, conv3-8s3x2d2, zeropad0:1x0:1, dwconv3s2p1m2, sepconv3-16same, leakyrelu0.2, gn4, "
            "ln, sdropout0.1, resblock64s2proj, inception64-96-128-16-32-32, conv3-4p0:1x2:3nb, avgpool3s2p1, "
            "res(conv3-8p1,bn), cat(relu | gelu), gap, fc10, softmax")
    specs = parse(text)
    assert to_text(specs) == text
    assert parse(to_text(specs)) == specs
    assert all(S.spec_from_dict(s.to_dict()) == s for s in specs)


@pytest.mark.parametrize("text,message", [
    ("layernrom", "unknown layer 'layernrom' (did you mean 'layernorm'?)"),
    ("conv3-64, maxpol2", "unknown layer 'maxpol2' (did you mean 'maxpool' or"),
    ("conv" + "9" * 5000 + "-1", "has more than 7 digits"),
    ("1000*(1000*(1000*(relu)))", "at most 5000 layers; this one expands to 1,000,000,000"),
    ("9" * 5000 + "*relu", "repeat count above 1000"),
    ("((relu", "expected ')'"),
    ("res(relu |", "expected ')'"),
    ("2*", "ends where a layer was expected"),
    ("conv3-64q", "cannot read 'q' in layer 'conv3-64q'"),
    ("2*" * 5000 + "relu", "nest deeper than 16 levels"),
    ("(" * 1000 + "relu" + ")" * 1000, "nest deeper than 16 levels"),
    ("res()", "the first path of res(...) needs at least one layer"),
    ("cat(relu | )", "every path of cat(...) needs at least one layer"),
    ("zeropad", "zeropad needs a size"),
])
def test_bad_specs_raise_one_line(text, message):
    with pytest.raises(SpecError) as e:
        parse(text)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("text,ok", [("maxpool2p2", False), ("avgpool2p2", False), ("maxpool3p2", False),
                                     ("maxpool2p1", True), ("avgpool3p1", True), ("maxpool3p2d2", False),
                                     ("maxpool3p3d2", False), ("maxpool4p0:2", True), ("avgpool3p0:2", False)])
def test_pool_padding_at_most_half_the_window_as_pytorch(text, ok):
    """PyTorch refuses pool padding above half the pool size ("pad should be smaller than or equal to half
    of kernel size", dilated or not): 2P <= F on every side; kerascnn does the same for both kinds."""
    if ok:
        analysis.analyze(parse(text), (8, 8, 1))
    else:
        with pytest.raises(ConfigError, match="more than half the window"):
            analysis.analyze(parse(text), (8, 8, 1))


def test_spec_like_includes_close_misspellings_but_not_model_names():
    assert is_spec_like("layernrom") and is_spec_like("gelu") and is_spec_like("res(relu)")
    assert not is_spec_like("resnet18") and not is_spec_like("vgg16") and not is_spec_like("googlenet")


def test_rule_for_one_layer_at_a_time():
    """The per-layer entry point other readers use (e.g. a Keras-model reader)."""
    rule = rule_for(S.Conv(8, (1, 7), stride=(1, 2), padding=(0, 3), dilation=1))
    assert rule.output_shape((10, 20, 4)) == (10, 10, 8)
    assert rule.params((10, 20, 4)) == (7 * 4 * 8 + 8, 7 * 4 * 8 + 8)
    assert rule.macs((10, 20, 4)) == 10 * 10 * 8 * 7 * 4
    assert rule.field(1, 1, 0.0) == ((1, 7), (1, 2), (0.0, 0.0))   # centre of unit 0: (7-1)/2 - 3 = 0
    assert rule.note((10, 20, 4)) == "doesn't fit: (20 - 7 + 2*3)/2 + 1 = 10.5, not an integer (floored to 10)"
    assert rule_for(S.BatchNorm()).params((4, 4, 8)) == (32, 16)
    assert rule_for(S.Pool("max", 3, 2, 1)).field((3, 3), (1, 1), (0.0, 0.0)) == ((5, 5), (2, 2), (0.0, 0.0))
    with pytest.raises(ConfigError, match="unknown layer spec"):
        rule_for(object())


def test_new_blocks_and_padding_layers_save_and_load(tmp_path):
    import keras
    import numpy as np

    from kerascnn.keras_build import build_sequential

    model = build_sequential(parse("conv3-4s2p1, maxpool3s2p1, res(conv3-4p1nb,bn | conv1-4), "
                                   "cat(dwconv3p1 | sepconv3-4p2d2), gap"), (9, 9, 3))
    x = np.random.default_rng(0).uniform(-1, 1, (2, 9, 9, 3)).astype("float32")
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    assert np.array_equal(np.asarray(again(x)), np.asarray(model(x)))
    assert [l.name for l in again.layers][:4] == ["conv2d_pad", "conv2d", "max_pooling2d_pad", "max_pooling2d"]
