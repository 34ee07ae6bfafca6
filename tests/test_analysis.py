"""The lectures' worked numbers, computed by the pure-Python analysis (no TensorFlow)."""
import sys

import pytest

from kerascnn import analysis
from kerascnn.analysis import analyze, conv_output_size
from kerascnn.errors import ConfigError, GeometryError
from kerascnn.specs import BatchNorm, Conv, Dense, GlobalPool, Inception, Pool, Residual
from kerascnn.speclang import parse


@pytest.mark.parametrize("w,f,s,p,expected", [
    (7, 3, 1, 0, 5), (7, 3, 2, 0, 3), (7, 3, 1, 1, 7), (32, 5, 1, 2, 32), (227, 11, 4, 0, 55),
    (224, 3, 1, "same", 224), (113, 3, 2, "same", 57), (5, 3, 2, "valid", 2),
])
def test_output_size_formula(w, f, s, p, expected):
    out, note = conv_output_size(w, f, s, p)
    assert out == expected
    assert note == ""


def test_same_is_p_equals_f_minus_1_over_2_so_it_does_not_fit_where_p1_does_not():
    """`same` and P=(F-1)/2 are one layer: both are flagged at an even size with stride 2."""
    assert conv_output_size(112, 3, 2, "same") == conv_output_size(112, 3, 2, 1)
    out, note = conv_output_size(112, 3, 2, "same")
    assert out == 56 and "(112 - 3 + 2*1)/2 + 1 = 56.5" in note


def test_stride_that_does_not_fit_is_flagged_with_the_numbers():
    out, note = conv_output_size(7, 3, 3, 0)
    assert out == 2
    assert "doesn't fit" in note and "(7 - 3 + 2*0)/3 + 1 = 2.333" in note
    r = analyze([Conv(4, 3, 3)], (7, 7, 1))
    assert r.warnings() == ["conv2d: " + note]
    out, note = conv_output_size(10, 3, 2, 0)
    assert (out, "4.5" in note) == (4, True)


def test_size_reaching_zero_is_an_error_naming_the_layer():
    with pytest.raises(GeometryError, match=r"conv2d: spatial size collapses: \(3 - 5 \+ 2\*0\)/1 \+ 1 = -1"):
        analyze([Conv(1, 5)], (3, 3, 1))
    with pytest.raises(GeometryError, match="max_pooling2d"):
        analyze([Pool("max", 2)], (1, 1, 4))


def test_lecture_exercise_32x32x3_ten_5x5_filters():
    r = analyze(parse("conv5-10s1p2"), (32, 32, 3))
    (row,) = r.layers
    assert row.output_shape == (32, 32, 10)
    assert row.params == 760 == (5 * 5 * 3 + 1) * 10
    assert row.macs == 768_000 == 75 * 10_240
    assert row.receptive_field == 5 and row.jump == 1
    assert row.activation_bytes == 32 * 32 * 10 * 4


@pytest.mark.parametrize("c", [1, 16, 64])
def test_stacked_3x3_versus_one_5x5_and_7x7(c):
    two = analyze(parse(f"2*conv3-{c}p1nb"), (32, 32, c))
    five = analyze(parse(f"conv5-{c}p2nb"), (32, 32, c))
    assert (two.total_params, five.total_params) == (18 * c * c, 25 * c * c)
    assert two.receptive_field == five.receptive_field == 5
    three = analyze(parse(f"3*conv3-{c}p1nb"), (32, 32, c))
    seven = analyze(parse(f"conv7-{c}p3nb"), (32, 32, c))
    assert (three.total_params, seven.total_params) == (27 * c * c, 49 * c * c)
    assert three.receptive_field == seven.receptive_field == 7


@pytest.mark.parametrize("layers", [1, 2, 5, 10])
def test_receptive_field_1_plus_L_times_K_minus_1(layers):
    r = analyze([Conv(8, 3, padding=1)] * layers, (64, 64, 3))
    assert r.receptive_field == 1 + layers * (3 - 1)
    assert [l.receptive_field for l in r.layers] == [1 + (i + 1) * 2 for i in range(layers)]


def test_receptive_field_grows_with_the_jump_after_strides():
    r = analyze(parse("conv3-8p1, maxpool2, conv3-8p1, maxpool2, conv3-8p1"), (32, 32, 3))
    assert [(l.receptive_field, l.jump) for l in r.layers] == [(3, 1), (4, 2), (8, 2), (10, 4), (18, 4)]


def test_2x2_max_pool_stride_2_on_the_lecture_matrix():
    import numpy as np

    x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], dtype="float32")
    # the analysis says 2x2 out; Keras computes the values
    assert analyze(parse("maxpool2s2"), (4, 4, 1)).output_shape == (2, 2, 1)
    import keras

    y = keras.layers.MaxPooling2D(2, 2)(x.reshape(1, 4, 4, 1))
    assert keras.ops.convert_to_numpy(y).reshape(2, 2).tolist() == [[6, 8], [3, 4]]


def test_params_and_macs_for_dense_bn_groups_and_global_pool():
    r = analyze([Conv(8, 3, padding=1, groups=2), BatchNorm(), GlobalPool(), Dense(10)], (8, 8, 4))
    conv, bn, gap, fc = r.layers
    assert conv.params == 3 * 3 * 2 * 8 + 8 and conv.macs == 8 * 8 * 8 * 3 * 3 * 2
    assert (bn.params, bn.trainable_params, bn.non_trainable_params) == (32, 16, 16)
    assert gap.output_shape == (8,) and fc.params == 90 and fc.macs == 80
    assert r.total_params == 152 + 32 + 90 and r.trainable_params == 152 + 16 + 90


def test_blocks_report_children_and_the_largest_receptive_field():
    r = analyze([Inception(64, (96, 128), (16, 32), 32, name="inception_3a")], (28, 28, 192))
    (row,) = r.layers
    assert row.output_shape == (28, 28, 256)
    assert row.params == 163_696  # GoogLeNet 3a with biases
    assert row.receptive_field == 5 and len(row.children) == 7
    r = analyze([Residual(64, 2, projection=True, name="b")], (56, 56, 32))
    (row,) = r.layers
    assert row.output_shape == (28, 28, 64)
    assert row.receptive_field == 3 + 2 * 2 and row.jump == 2  # 3x3/2 then 3x3
    with pytest.raises(GeometryError, match="projection"):
        analyze([Residual(64, 2, projection=False, name="b")], (56, 56, 32))


def test_bad_values_are_config_errors():
    with pytest.raises(ConfigError):
        analyze([Conv(0, 3)], (8, 8, 1))
    with pytest.raises(ConfigError):
        analyze([Conv(8, 3, groups=3)], (8, 8, 4))
    with pytest.raises(ConfigError):
        analyze([Conv(8, 3)], (8, 8))
    with pytest.raises(ConfigError):
        parse("conv3-0")
    with pytest.raises(ConfigError):
        parse("conv3-8q2")


def test_smallest_square_input():
    from kerascnn.registry import get_entry

    specs = get_entry("alexnet").specs()
    assert analysis.smallest_square_input(specs, 3) == 67
    with pytest.raises(GeometryError, match=r"alexnet cannot take a 32x32x3 input: .*pool2.*67x67x3"):
        get_entry("alexnet").analyze((32, 32, 3))
    with pytest.raises(GeometryError, match=r"vgg16 cannot take a 28x28x1 input: .*block5_pool.*32x32x1"):
        get_entry("vgg16").analyze((28, 28, 1))


def test_analysis_imports_no_tensorflow():
    import subprocess

    code = ("import sys, kerascnn.analysis, kerascnn.registry as r; r.get_entry('vgg16').analyze();"
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
