"""BatchNorm folding: no BatchNormalization left, outputs equal within 1e-4 relative."""
import numpy as np
import pytest

from kerascnn.fuse import count_batchnorm, fold_batchnorm
from kerascnn.registry import build_model, get_entry
from kerascnn.specs import fold_bn_specs


def _randomise_bn(model, rng):
    import keras

    layers = list(model.layers) + [i for l in model.layers for i in getattr(l, "inner_layers", [])]
    for layer in layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.get_weights()[0].shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.2, c), rng.normal(0, 0.2, c),
                               rng.uniform(0.5, 2.0, c)])


@pytest.mark.parametrize("name,shape,opts", [
    ("vgg11_bn", (32, 32, 3), {}),
    ("resnet18", (32, 32, 3), {"small_input": True}),
    ("resnet50", (32, 32, 3), {"small_input": True}),
    ("lenet5", (28, 28, 1), {"variant": "modern", "batch_norm": True}),
    ("convnet", (28, 28, 1), {}),
])
def test_folded_model_equals_the_original(name, shape, opts):
    rng = np.random.default_rng(0)
    model = build_model(name, shape, 10, **opts)
    _randomise_bn(model, rng)
    fused = fold_batchnorm(model, options=opts)
    assert count_batchnorm(fused) == 0
    x = rng.random((4,) + shape, dtype=np.float32)
    a, b = np.asarray(model(x, training=False)), np.asarray(fused(x, training=False))
    assert np.max(np.abs(a - b)) / np.max(np.abs(a)) < 1e-4
    assert np.array_equal(a.argmax(1), b.argmax(1))


def test_fused_specs_arithmetic():
    entry = get_entry("vgg11_bn")
    specs = entry.specs((224, 224, 3), 1000)
    from kerascnn.analysis import analyze

    plain = analyze(get_entry("vgg11").specs((224, 224, 3), 1000), (224, 224, 3))
    fused = analyze(fold_bn_specs(specs), (224, 224, 3))
    assert fused.total_params == plain.total_params == 132_863_336   # BN folded = VGG-11 with biases
    r18 = analyze(fold_bn_specs(get_entry("resnet18").specs()), (224, 224, 3))
    # every conv gains a bias of its width, every BN (4 x width) disappears
    assert r18.total_params == 11_699_112 - 9_600 * 2 + 4_800


def test_fold_refuses_a_foreign_model():
    import keras

    from kerascnn.errors import ConfigError

    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="mystery")
    with pytest.raises(ConfigError, match="kerascnn model"):
        fold_batchnorm(m)


# every BatchNorm after a linear conv (plain, depthwise with multiplier, separable) or dense layer
DW_SPEC = "conv3-8nb, bn, relu, dwconv3nb, bn, relu, dwconv3m2, bn, relu, sepconv3-12nb, bn, relu, gap, fc6, bn"


def _abs_network(specs, model, shape):
    """The model with |weights|, BatchNorm as |s| (x + |mean|) + |beta|: on |x| it bounds every
    intermediate |W| |a| + |b| of the original (ReLU, pooling and averaging keep the bound)."""
    import keras

    from kerascnn.keras_build import build_sequential

    net = build_sequential(specs, shape, name="abs")
    for src, dst in zip(model.layers, net.layers):
        w = [np.abs(v) for v in src.get_weights()]
        if isinstance(src, keras.layers.BatchNormalization):
            w[2] = -w[2]                                            # x - (-|mean|) = x + |mean|
        dst.set_weights(w)
    return net


def test_batchnorm_folds_into_depthwise_and_separable_convolutions_within_the_float32_bound():
    import keras

    from kerascnn import speclang
    from kerascnn.keras_build import build_sequential
    from kerascnn.specs import DepthwiseConv, SeparableConv

    rng = np.random.default_rng(0)
    specs, shape = speclang.parse(DW_SPEC), (10, 10, 3)
    model = build_sequential(specs, shape, name="spec")
    _randomise_bn(model, rng)
    folded = fold_bn_specs(specs)
    assert [type(s).__name__ for s in folded].count("BatchNorm") == 0
    assert all(s.use_bias for s in folded if isinstance(s, (DepthwiseConv, SeparableConv)))
    fused = fold_batchnorm(model, specs=specs)
    assert count_batchnorm(fused) == 0 and fused.count_params() < model.count_params()
    kinds = {type(l).__name__ for l in fused.layers}
    assert {"DepthwiseConv2D", "SeparableConv2D"} <= kinds
    x = rng.random((4,) + shape, dtype=np.float32)
    a, b = np.asarray(model(x, training=False), np.float64), np.asarray(fused(x, training=False), np.float64)
    # Forward error bound: a length-n dot product in float32 is off by at most n*u |W||a| (u = eps/2),
    # BatchNorm's (x - mean) * s + beta and the rounded folded weights by a few u more; summed over
    # the layers on the path and counted for both models, relative to the |W||a| network's output M.
    u = np.finfo(np.float32).eps / 2
    n = 3 * 3 * 3 + 3 * 3 + 3 * 3 + (3 * 3 + 8 * 2) + 8 * 8 + 12   # conv, dw, dw m2, sep (dw + 1x1), gap 8x8, fc
    m = np.asarray(_abs_network(specs, model, shape)(np.abs(x), training=False), np.float64)
    bound = 2 * u * (n + 4 * 6) * m
    diff = np.abs(a - b)
    assert np.all(diff <= bound), (diff.max(), bound.min())
    assert np.max(np.abs(a)) > 0.1      # a real output, not a collapsed one
    assert keras.backend.standardize_dtype(fused.layers[-1].compute_dtype) == "float32"


def test_a_batchnorm_after_an_activated_layer_is_not_folded():
    from kerascnn.specs import BatchNorm, Conv, DepthwiseConv

    specs = [DepthwiseConv(3, activation="relu", name="dw"), BatchNorm(name="bn"), Conv(4, 1, name="pw"),
             BatchNorm(name="bn2")]
    assert [type(s).__name__ for s in fold_bn_specs(specs)] == ["DepthwiseConv", "BatchNorm", "Conv"]
