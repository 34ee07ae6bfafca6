"""Fold BatchNormalization into the preceding convolution or dense layer (inference only).

At test time BatchNorm is an affine map per channel, y = gamma (x - mean) / sqrt(var + eps) + beta,
so it can be merged into the layer before it -- the lecture's "zero overhead at test time":

    s  = gamma / sqrt(var + eps)
    W' = W * s          (per output channel)
    b' = beta + (b - mean) * s

The layer before it is a Conv2D or Dense (kernel ``(..., K)``), a DepthwiseConv2D (kernel
``(F, F, C, m)``, output channel ``c*m + j``: scaled as ``(F, F, C*m)``) or a SeparableConv2D
(only its pointwise kernel and bias change; the depthwise kernel has no output-channel axis).

The fused model is rebuilt from the architecture's specs with ``specs.fold_bn_specs`` (same
layer names, BatchNorm rows gone, biases added; residual blocks rebuilt ``fused``) and the
folded weights are copied in by name. Pure ``keras`` API, so it also runs on JAX.
"""
from __future__ import annotations

import numpy as np

from kerascnn.errors import ConfigError


def _fold(kernel, bias, bn):
    gamma, beta, mean, var = (np.asarray(w, np.float64) for w in bn.get_weights())
    s = gamma / np.sqrt(var + bn.epsilon)
    b = np.zeros_like(s) if bias is None else np.asarray(bias, np.float64)
    return (np.asarray(kernel, np.float64) * s).astype(np.float32), (beta + (b - mean) * s).astype(np.float32)


def _folded_weights(layer, bn) -> list:
    """``layer``'s weights with the BatchNorm ``bn`` that follows it folded in (kernel(s), bias)."""
    import keras

    w = layer.get_weights()
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        shape = w[0].shape
        kernel, bias = _fold(w[0].reshape(shape[:2] + (-1,)), w[1] if len(w) > 1 else None, bn)
        return [kernel.reshape(shape), bias]
    if isinstance(layer, keras.layers.SeparableConv2D):
        kernel, bias = _fold(w[1], w[2] if len(w) > 2 else None, bn)
        return [w[0], kernel, bias]
    kernel, bias = _fold(w[0], w[1] if len(w) > 1 else None, bn)
    return [kernel, bias]


def _foldable(layer) -> bool:
    import keras

    kinds = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D, keras.layers.Dense)
    return isinstance(layer, kinds) and getattr(layer.activation, "__name__", "linear") == "linear"


def fold_batchnorm(model, model_name: str | None = None, options: dict | None = None, specs: list | None = None):
    """A new ``keras.Sequential`` equal to ``model`` at inference, without BatchNormalization layers.

    ``model`` must be a kerascnn model (its name is the registry name unless ``model_name`` says
    otherwise; ``options`` are the model options it was built with, e.g. from the run's config),
    or ``specs`` the layer specs it was built from (``keras_build.build_sequential``).
    """
    import keras

    from kerascnn.keras_build import build_sequential
    from kerascnn.layers import flat_layers
    from kerascnn.registry import is_model, model_ref
    from kerascnn.specs import fold_bn_specs

    name = model_name or model.name
    if specs is None and not is_model(name):
        raise ConfigError(f"--fuse-bn needs a kerascnn model (a run directory or a registered name); "
                          f"{name!r} is not one")
    shape = tuple(int(v) for v in model.input_shape[1:])
    k = int(model.output_shape[-1])
    if specs is None:
        specs = model_ref(name, dict(options or {}), shape, k).specs()
    fused = build_sequential(fold_bn_specs(specs), shape, name=f"{name}_fused")
    src = flat_layers(model)
    dst = {layer.name: layer for layer in flat_layers(fused)}
    if len([l for l in src if l.weights]) == 0:
        return fused
    pending = None  # a linear conv/dense layer whose BatchNorm may follow
    for layer in src:
        if isinstance(layer, keras.layers.BatchNormalization):
            if pending is None:
                raise ConfigError(f"{layer.name}: BatchNorm not preceded by a linear conv/dense layer cannot be "
                                  f"folded")
            dst[pending.name].set_weights(_folded_weights(pending, layer))
            pending = None
            continue
        if pending is not None:  # the previous conv/dense had no BatchNorm after it
            dst[pending.name].set_weights(pending.get_weights())
            pending = None
        if _foldable(layer):
            pending = layer
        elif layer.weights and not getattr(layer, "inner_layers", None) and layer.name in dst:
            dst[layer.name].set_weights(layer.get_weights())
    if pending is not None:
        dst[pending.name].set_weights(pending.get_weights())
    return fused


def count_batchnorm(model) -> int:
    import keras

    from kerascnn.layers import flat_layers

    return sum(isinstance(l, keras.layers.BatchNormalization) for l in flat_layers(model))
