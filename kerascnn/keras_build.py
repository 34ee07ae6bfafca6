"""Spec list -> ``keras.Sequential``: the only place that maps specs to Keras layers.

Uses the pure ``keras`` API (no TensorFlow-only calls), so the models also run
with ``KERAS_BACKEND=jax``. Every Keras layer gets the spec's name, so summary
rows and analysis rows line up by name.
"""
from __future__ import annotations

import keras

from kerascnn import specs as S

BN_MOMENTUM = 0.9      # torchvision's 0.1 in PyTorch's convention
BN_EPSILON = 1e-5


def _padding(kernel: int, padding) -> tuple:
    """Lecture padding P -> (Keras padding string, extra explicit zero padding)."""
    if padding in ("same", "valid"):
        return padding, 0
    p = int(padding)
    if p == 0:
        return "valid", 0
    if kernel % 2 == 1 and p == (kernel - 1) // 2:
        return "same", 0  # identical output size and alignment for every input and stride
    return "valid", p


def spec_layers(spec: S.Spec, dtype=None) -> list:
    """The Keras layer(s) for one spec (a conv with odd padding gets a ZeroPadding2D first)."""
    kw = {"name": spec.name}
    if dtype is not None:
        kw["dtype"] = dtype
    if isinstance(spec, S.Conv):
        pad, extra = _padding(spec.kernel, spec.padding)
        pre = [keras.layers.ZeroPadding2D(extra, name=f"{spec.name}_pad")] if extra else []
        return pre + [keras.layers.Conv2D(spec.filters, spec.kernel, strides=spec.stride, padding=pad,
                                          activation=spec.activation, use_bias=spec.use_bias,
                                          groups=spec.groups, **kw)]
    if isinstance(spec, S.Pool):
        pad, extra = _padding(spec.size, spec.padding)
        cls = keras.layers.MaxPooling2D if spec.kind == "max" else keras.layers.AveragePooling2D
        pre = [keras.layers.ZeroPadding2D(extra, name=f"{spec.name}_pad")] if extra else []
        return pre + [cls(spec.size, strides=spec.stride or spec.size, padding=pad, **kw)]
    if isinstance(spec, S.GlobalPool):
        cls = keras.layers.GlobalAveragePooling2D if spec.kind == "avg" else keras.layers.GlobalMaxPooling2D
        return [cls(**kw)]
    if isinstance(spec, S.Flatten):
        return [keras.layers.Flatten(**kw)]
    if isinstance(spec, S.Dense):
        return [keras.layers.Dense(spec.units, activation=spec.activation, use_bias=spec.use_bias, **kw)]
    if isinstance(spec, S.Dropout):
        return [keras.layers.Dropout(spec.rate, **kw)]
    if isinstance(spec, S.BatchNorm):
        return [keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, **kw)]
    if isinstance(spec, S.Activation):
        return [keras.layers.Activation(spec.fn, **kw)]
    if isinstance(spec, S.Inception):
        from kerascnn.layers import InceptionBlock
        return [InceptionBlock(spec.c1, spec.c2, spec.c3, spec.c4, **kw)]
    if isinstance(spec, S.Residual):
        from kerascnn.layers import ResidualBlock
        return [ResidualBlock(spec.filters, spec.stride, spec.bottleneck, spec.projection, spec.fused, **kw)]
    raise TypeError(f"no Keras layer for spec {spec!r}")


def build_sequential(specs: list, input_shape, name: str = "model") -> keras.Sequential:
    """Build the Sequential for ``specs``; the final layer computes in float32.

    Under a mixed-precision policy every layer computes in float16/bfloat16 except
    the last one, so the class probabilities (and the loss) stay float32.
    """
    specs = S.auto_name(list(specs))
    layers = []
    for i, spec in enumerate(specs):
        layers.extend(spec_layers(spec, dtype="float32" if i == len(specs) - 1 else None))
    return keras.Sequential([keras.Input(shape=tuple(input_shape), name="images")] + layers, name=name)
