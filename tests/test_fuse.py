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
