"""Kinds without a sliding window: global pooling, flatten, dense, dropout, normalization, activations."""
from __future__ import annotations

import math
import re

from kerascnn import specs as S
from kerascnn.errors import ConfigError
from kerascnn.rules.base import Rule, as_pairs, register

BN_MOMENTUM = 0.9      # torchvision's 0.1 in PyTorch's convention
BN_EPSILON = 1e-5
LEAKY_SLOPE = 0.01     # PyTorch's default negative slope (Keras's LeakyReLU defaults to 0.3)


def _whole_input_field(rf, jump, start, in_shape):
    """A layer that sees the whole HxW grid: the field grows by (H-1) and (W-1) jumps."""
    rf, jump, start = as_pairs(rf, jump, start)
    if in_shape is None or len(in_shape) != 3:
        return rf, jump, start
    hw = in_shape[:2]
    return (tuple(r + (n - 1) * j for r, n, j in zip(rf, hw, jump)), jump,
            tuple(s + (n - 1) / 2 * j for s, n, j in zip(start, hw, jump)))


@register(S.GlobalPool)
class GlobalPoolRule(Rule):
    keywords = ("gap", "gmp", "globalavgpool", "globalmaxpool")

    def output_shape(self, in_shape):
        return (self._spatial(in_shape)[-1],)

    def field(self, rf, jump, start, in_shape=None):
        return _whole_input_field(rf, jump, start, in_shape)

    def keras_layers(self, dtype=None):
        import keras

        cls = keras.layers.GlobalAveragePooling2D if self.spec.kind == "avg" else keras.layers.GlobalMaxPooling2D
        return [cls(**self._kw(dtype))]

    def token(self):
        return "gap" if self.spec.kind == "avg" else "gmp"

    @classmethod
    def parse(cls, t, token, help_text):
        if t in ("gap", "globalavgpool"):
            return [S.GlobalPool("avg")]
        if t in ("gmp", "globalmaxpool"):
            return [S.GlobalPool("max")]
        return None


@register(S.Flatten)
class FlattenRule(Rule):
    keywords = ("flatten",)

    def output_shape(self, in_shape):
        return (math.prod(in_shape),)

    def field(self, rf, jump, start, in_shape=None):
        return _whole_input_field(rf, jump, start, in_shape)

    def keras_layers(self, dtype=None):
        import keras

        return [keras.layers.Flatten(**self._kw(dtype))]

    def token(self):
        return "flatten"

    @classmethod
    def parse(cls, t, token, help_text):
        return [S.Flatten()] if t == "flatten" else None


@register(S.Dense)
class DenseRule(Rule):
    """in*out + out parameters; in*out multiply-adds per position."""

    keywords = ("fc", "dense")
    _RE = re.compile(r"^(?:fc|dense)(\d+)(nb)?$")

    def output_shape(self, in_shape):
        if self.spec.units < 1:
            raise ConfigError(f"{self.name}: units must be >= 1; received {self.spec.units}")
        return tuple(in_shape[:-1]) + (self.spec.units,)

    def params(self, in_shape):
        self.output_shape(in_shape)
        n = in_shape[-1] * self.spec.units + (self.spec.units if self.spec.use_bias else 0)
        return n, n

    def macs(self, in_shape):
        return math.prod(in_shape) * self.spec.units

    def keras_layers(self, dtype=None):
        import keras

        return [keras.layers.Dense(self.spec.units, activation=self.spec.activation,
                                   use_bias=self.spec.use_bias, **self._kw(dtype))]

    def token(self):
        t = f"fc{self.spec.units}" + ("" if self.spec.use_bias else "nb")
        return f"{t},{self.spec.activation}" if self.spec.activation else t

    @classmethod
    def parse(cls, t, token, help_text):
        m = cls._RE.match(t)
        if not m:
            return None
        units = int(m.group(1))
        if units < 1:
            raise ConfigError(f"units must be >= 1 in layer {token!r}; received {units}")
        return [S.Dense(units, use_bias=not m.group(2))]


class _DropoutBase(Rule):
    def output_shape(self, in_shape):
        if not 0 <= self.spec.rate < 1:
            raise ConfigError(f"{self.name}: dropout rate must be in [0, 1); received {self.spec.rate}")
        return tuple(in_shape)


@register(S.Dropout)
class DropoutRule(_DropoutBase):
    keywords = ("dropout",)
    _RE = re.compile(r"^dropout(0?\.\d+|0)$")

    def keras_layers(self, dtype=None):
        import keras

        return [keras.layers.Dropout(self.spec.rate, **self._kw(dtype))]

    def token(self):
        return f"dropout{self.spec.rate:g}"

    @classmethod
    def parse(cls, t, token, help_text):
        m = cls._RE.match(t)
        return [S.Dropout(float(m.group(1)))] if m else None


@register(S.SpatialDropout)
class SpatialDropoutRule(_DropoutBase):
    """Drops whole channels (feature maps) with probability ``rate``."""

    keywords = ("sdropout", "spatialdropout")
    _RE = re.compile(r"^(?:sdropout|spatialdropout)(0?\.\d+|0)$")

    def output_shape(self, in_shape):
        self._spatial(in_shape)
        return super().output_shape(in_shape)

    def keras_layers(self, dtype=None):
        import keras

        return [keras.layers.SpatialDropout2D(self.spec.rate, **self._kw(dtype))]

    def token(self):
        return f"sdropout{self.spec.rate:g}"

    @classmethod
    def parse(cls, t, token, help_text):
        m = cls._RE.match(t)
        return [S.SpatialDropout(float(m.group(1)))] if m else None


@register(S.BatchNorm)
class BatchNormRule(Rule):
    """2C trainable (gamma, beta) + 2C non-trainable (moving mean, variance)."""

    keywords = ("bn", "batchnorm")

    def params(self, in_shape):
        c = in_shape[-1]
        return 4 * c, 2 * c

    def keras_layers(self, dtype=None):
        import keras

        eps = BN_EPSILON if self.spec.epsilon is None else float(self.spec.epsilon)
        return [keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=eps, **self._kw(dtype))]

    def token(self):
        return "bn" if self.spec.epsilon is None else f"bn_eps{self.spec.epsilon!r}"

    _EPS = re.compile(r"^(?:bn|batchnorm)_eps([0-9.]+(?:e-?\d+)?)$")

    @classmethod
    def parse(cls, t, token, help_text):
        if t in ("bn", "batchnorm"):
            return [S.BatchNorm()]
        m = cls._EPS.match(t)
        if m:
            eps = float(m.group(1))
            if not eps > 0:
                raise ConfigError(f"BatchNorm epsilon must be > 0 in layer {token!r}")
            return [S.BatchNorm(epsilon=eps)]
        return None


@register(S.LayerNorm)
class LayerNormRule(Rule):
    """Normalizes each position over its C channels (PyTorch's LayerNorm(C), ConvNeXt): 2C trainable."""

    keywords = ("ln", "layernorm")

    def params(self, in_shape):
        c = in_shape[-1]
        return 2 * c, 2 * c

    def keras_layers(self, dtype=None):
        import keras

        return [keras.layers.LayerNormalization(axis=-1, epsilon=BN_EPSILON, **self._kw(dtype))]

    def token(self):
        return "ln"

    @classmethod
    def parse(cls, t, token, help_text):
        return [S.LayerNorm()] if t in ("ln", "layernorm") else None


@register(S.GroupNorm)
class GroupNormRule(Rule):
    """Statistics over G groups of C/G channels per sample: 2C trainable (gamma, beta)."""

    keywords = ("gn", "groupnorm")
    _RE = re.compile(r"^(?:gn|groupnorm)(\d+)$")

    def output_shape(self, in_shape):
        g, c = self.spec.groups, in_shape[-1]
        if g < 1 or c % g:
            raise ConfigError(f"{self.name}: groups={g} must divide the {c} channels")
        return tuple(in_shape)

    def params(self, in_shape):
        self.output_shape(in_shape)
        c = in_shape[-1]
        return 2 * c, 2 * c

    def keras_layers(self, dtype=None):
        import keras

        return [keras.layers.GroupNormalization(self.spec.groups, epsilon=BN_EPSILON, **self._kw(dtype))]

    def token(self):
        return f"gn{self.spec.groups}"

    @classmethod
    def parse(cls, t, token, help_text):
        m = cls._RE.match(t)
        return [S.GroupNorm(int(m.group(1)))] if m else None


ACTIVATIONS = ("relu", "sigmoid", "tanh", "softmax", "leaky_relu", "elu", "gelu", "swish")
_ACT_ALIASES = {"leakyrelu": "leaky_relu", "lrelu": "leaky_relu"}


@register(S.Activation)
class ActivationRule(Rule):
    """Element-wise; ``leakyrelu`` (slope 0.01, or ``leakyrelu0.2``), ``elu`` (alpha 1), ``gelu`` (exact)."""

    keywords = ACTIVATIONS + tuple(_ACT_ALIASES)
    _LEAKY = re.compile(r"^(?:leaky_relu|leakyrelu|lrelu)(0?\.\d+)?$")

    def output_shape(self, in_shape):
        if self.spec.fn not in ACTIVATIONS:
            raise ConfigError(f"{self.name}: unknown activation {self.spec.fn!r}; one of {', '.join(ACTIVATIONS)}")
        return tuple(in_shape)

    def keras_layers(self, dtype=None):
        import keras

        if self.spec.fn == "leaky_relu":
            slope = LEAKY_SLOPE if self.spec.alpha is None else self.spec.alpha
            return [keras.layers.LeakyReLU(negative_slope=slope, **self._kw(dtype))]
        return [keras.layers.Activation(self.spec.fn, **self._kw(dtype))]

    def token(self):
        if self.spec.fn == "leaky_relu":
            return "leakyrelu" + ("" if self.spec.alpha is None else f"{self.spec.alpha:g}")
        return self.spec.fn

    @classmethod
    def parse(cls, t, token, help_text):
        m = cls._LEAKY.match(t)
        if m:
            return [S.Activation("leaky_relu", float(m.group(1)) if m.group(1) else None)]
        return [S.Activation(t)] if t in ACTIVATIONS else None
