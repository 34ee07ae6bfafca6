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


def _affine(spec) -> int:
    """Per channel: gamma (``scale``) and beta (``center``), each optional."""
    return int(bool(spec.center)) + int(bool(spec.scale))


def _affine_suffix(spec) -> str:
    return ("" if spec.center else "_nocenter") + ("" if spec.scale else "_noscale")


@register(S.BatchNorm)
class BatchNormRule(Rule):
    """gamma and beta (C trainable each; ``_noscale``/``_nocenter`` drop one) + 2C non-trainable
    (moving mean, variance)."""

    keywords = ("bn", "batchnorm")
    _RE = re.compile(r"^(?:bn|batchnorm)(?:_eps([0-9.]+(?:e-?\d+)?))?(_nocenter)?(_noscale)?$")

    def params(self, in_shape):
        c = in_shape[-1]
        return (2 + _affine(self.spec)) * c, _affine(self.spec) * c

    def keras_layers(self, dtype=None):
        import keras

        eps = BN_EPSILON if self.spec.epsilon is None else float(self.spec.epsilon)
        return [keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=eps, center=self.spec.center,
                                                scale=self.spec.scale, **self._kw(dtype))]

    def token(self):
        eps = "" if self.spec.epsilon is None else f"_eps{self.spec.epsilon!r}"
        return "bn" + eps + _affine_suffix(self.spec)

    @classmethod
    def parse(cls, t, token, help_text):
        m = cls._RE.match(t)
        if not m:
            return None
        eps = None
        if m.group(1) is not None:
            try:
                eps = float(m.group(1))
            except ValueError:
                raise ConfigError(f"cannot read the epsilon of layer {token!r}") from None
            if not eps > 0:
                raise ConfigError(f"BatchNorm epsilon must be > 0 in layer {token!r}")
        return [S.BatchNorm(epsilon=eps, center=not m.group(2), scale=not m.group(3))]


@register(S.LayerNorm)
class LayerNormRule(Rule):
    """Normalizes each position over its C channels (PyTorch's LayerNorm(C), ConvNeXt): 2C trainable."""

    keywords = ("ln", "layernorm")
    _RE = re.compile(r"^(?:ln|layernorm)(_nocenter)?(_noscale)?$")

    def params(self, in_shape):
        n = _affine(self.spec) * in_shape[-1]
        return n, n

    def keras_layers(self, dtype=None):
        import keras

        return [keras.layers.LayerNormalization(axis=-1, epsilon=BN_EPSILON, center=self.spec.center,
                                                scale=self.spec.scale, **self._kw(dtype))]

    def token(self):
        return "ln" + _affine_suffix(self.spec)

    @classmethod
    def parse(cls, t, token, help_text):
        m = cls._RE.match(t)
        return [S.LayerNorm(center=not m.group(1), scale=not m.group(2))] if m else None


@register(S.GroupNorm)
class GroupNormRule(Rule):
    """Statistics over G groups of C/G channels per sample: 2C trainable (gamma, beta)."""

    keywords = ("gn", "groupnorm")
    _RE = re.compile(r"^(?:gn|groupnorm)(\d+)(_nocenter)?(_noscale)?$")

    def output_shape(self, in_shape):
        g, c = self.spec.groups, in_shape[-1]
        if g < 1 or c % g:
            raise ConfigError(f"{self.name}: groups={g} must divide the {c} channels")
        return tuple(in_shape)

    def params(self, in_shape):
        self.output_shape(in_shape)
        n = _affine(self.spec) * in_shape[-1]
        return n, n

    def keras_layers(self, dtype=None):
        import keras

        return [keras.layers.GroupNormalization(self.spec.groups, epsilon=BN_EPSILON, center=self.spec.center,
                                                scale=self.spec.scale, **self._kw(dtype))]

    def token(self):
        return f"gn{self.spec.groups}" + _affine_suffix(self.spec)

    @classmethod
    def parse(cls, t, token, help_text):
        m = cls._RE.match(t)
        return [S.GroupNorm(int(m.group(1)), center=not m.group(2), scale=not m.group(3))] if m else None


@register(S.LayerScale)
class LayerScaleRule(Rule):
    """y = gamma * x with one learned gamma per channel (ConvNeXt): C trainable parameters; the
    geometry (field, jump) is unchanged."""

    keywords = ("layerscale",)

    def params(self, in_shape):
        return in_shape[-1], in_shape[-1]

    def keras_layers(self, dtype=None):
        from kerascnn.exact_layers import LayerScale

        return [LayerScale(self.spec.init_values, **self._kw(dtype))]

    def token(self):
        return "layerscale"

    @classmethod
    def parse(cls, t, token, help_text):
        return [S.LayerScale()] if t == "layerscale" else None


_NUM = r"\d+(?:\.\d*)?(?:e-?\d+)?|\.\d+(?:e-?\d+)?"


@register(S.Rescale)
class RescaleRule(Rule):
    """Rescaling y = x * scale + offset: ``rescale/255`` (scale 1/255), ``rescale/127.5-1``
    ([0, 255] to [-1, 1]), ``rescale2+1``; no parameters, the geometry unchanged."""

    keywords = ("rescale",)
    _RE = re.compile(rf"^rescale(/)?({_NUM})([+-](?:{_NUM}))?$")

    def keras_layers(self, dtype=None):
        import keras

        return [keras.layers.Rescaling(self.spec.scale, self.spec.offset, **self._kw(dtype))]

    def token(self):
        sc, off = self.spec.scale, self.spec.offset
        inv = 1 / sc if sc else 0
        if 0 < sc < 1 and float(f"{inv:g}") == inv:
            t = f"rescale/{inv:g}"
        else:
            t = f"rescale{sc:g}" if float(f"{sc:g}") == sc else f"rescale{sc!r}"
        return t + (f"{off:+g}" if off else "")

    @classmethod
    def parse(cls, t, token, help_text):
        m = cls._RE.match(t)
        if not m:
            return None
        v = float(m.group(2))
        if m.group(1) and v == 0:
            raise ConfigError(f"cannot divide by 0 in layer {token!r}")
        return [S.Rescale(1 / v if m.group(1) else v, float(m.group(3) or 0))]


@register(S.Normalize)
class NormalizeRule(Rule):
    """Normalization (x - mean)/sqrt(variance) per channel. ``norm``: mean and variance are the layer's
    state (2C + 1 non-trainable numbers with the sample count; mean 0 and variance 1 until adapted);
    a layer given them as constants has no weights."""

    keywords = ("norm",)

    def params(self, in_shape):
        if self.spec.mean is not None:
            return 0, 0
        n = 2 * in_shape[-1] + 1
        return n, 0

    def keras_layers(self, dtype=None):
        import keras

        kw = {} if self.spec.mean is None else {"mean": list(self.spec.mean), "variance": list(self.spec.variance)}
        return [keras.layers.Normalization(axis=-1, **kw, **self._kw(dtype))]

    def token(self):
        if self.spec.mean is not None:
            raise ConfigError(f"{self.name}: a Normalization with constant mean/variance has no spec-language "
                              f"token (`norm` is the adaptable one)")
        return "norm"

    @classmethod
    def parse(cls, t, token, help_text):
        return [S.Normalize()] if t == "norm" else None


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
