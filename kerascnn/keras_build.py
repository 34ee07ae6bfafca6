"""Spec list -> ``keras.Sequential``; each spec's Keras layers come from ``kerascnn.layers.spec_layers``
(its rule, or the block layer built from its branches).

Uses the pure ``keras`` API (no TensorFlow-only calls), so the models also run
with ``KERAS_BACKEND=jax``. Every Keras layer gets the spec's name, so summary
rows and analysis rows line up by name.
"""
from __future__ import annotations

import keras

from kerascnn import specs as S
from kerascnn.layers import spec_layers  # noqa: F401  (blocks and leaf kinds alike)
from kerascnn.rules.simple import BN_EPSILON, BN_MOMENTUM  # noqa: F401  (kept importable here)


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
