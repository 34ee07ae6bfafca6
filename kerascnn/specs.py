"""The layer-spec vocabulary: each architecture is described once, as plain data.

A model is a list of specs. The same list drives two things that must never
drift apart:

* ``kerascnn.analysis`` walks it in pure Python (output sizes, parameters,
  multiply-adds, receptive field, memory) without importing TensorFlow;
* ``kerascnn.keras_build`` turns it into a ``keras.Sequential`` whose layers
  carry the same names, so every analysis row can be checked against Keras's
  own ``count_params()``.

Branching blocks (Inception, residual) are specs too: they list their
branches as spec lists, and ``kerascnn.layers`` builds one custom Keras layer
per block from those same lists.

Sizes follow the lectures: a kernel, stride or dilation is an int or an ``(h, w)``
pair. Padding is an integer P (zero padding on every side), an ``(h, w)`` pair,
``((top, bottom), (left, right))``, ``"valid"`` (0) or ``"same"``, which means
P = (F-1)/2 on every side for an odd (effective) kernel F -- the lecture's
padding, computed with the lecture's formula, for every input size and stride
(Keras's own ``"same"`` puts the odd pixel at the bottom/right when S > 1; the
built layers do not). For an even F, ``"same"`` pads (F-2)/2 before and F/2 after.

The arithmetic, Keras layers and spec syntax of every kind live in one rule
per kind: ``kerascnn.rules``.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Optional, Union

Size = Union[int, tuple]
Padding = Union[int, str, tuple]


def _snake(name: str) -> str:
    """Keras's automatic layer name of a class: ``Conv2DTranspose`` -> ``conv2d_transpose``."""
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


@dataclass(frozen=True)
class Spec:
    """Base class: every spec has a name (the Keras layer name) and a Keras class."""

    name: Optional[str] = field(default=None, kw_only=True)

    keras_class = "Layer"

    def named(self, name: str) -> "Spec":
        return replace(self, name=name)

    def to_dict(self) -> dict:
        d = {"type": type(self).__name__}
        d.update(asdict(self))
        return d


@dataclass(frozen=True)
class Conv(Spec):
    """Conv2D: ``filters`` kernels of ``kernel``x``kernel``, stride, zero padding, groups, dilation."""

    filters: int
    kernel: Size
    stride: Size = 1
    padding: Padding = 0
    activation: Optional[str] = None
    use_bias: bool = True
    groups: int = 1
    dilation: Size = 1
    keras_class = "Conv2D"


@dataclass(frozen=True)
class DepthwiseConv(Spec):
    """DepthwiseConv2D: one ``kernel`` per input channel (``depth_multiplier`` of them)."""

    kernel: Size
    stride: Size = 1
    padding: Padding = 0
    depth_multiplier: int = 1
    dilation: Size = 1
    use_bias: bool = True
    activation: Optional[str] = None
    keras_class = "DepthwiseConv2D"


@dataclass(frozen=True)
class SeparableConv(Spec):
    """SeparableConv2D: a depthwise ``kernel`` then a 1x1 pointwise conv to ``filters`` (one bias)."""

    filters: int
    kernel: Size
    stride: Size = 1
    padding: Padding = 0
    depth_multiplier: int = 1
    dilation: Size = 1
    use_bias: bool = True
    activation: Optional[str] = None
    keras_class = "SeparableConv2D"


@dataclass(frozen=True)
class ConvTranspose(Spec):
    """Conv2DTranspose (a "deconvolution"): every input pixel scatters a ``kernel``x``kernel`` copy of
    the kernel, ``stride`` apart; the full output (H-1)S + 1 + d(F-1) loses ``padding`` rows/columns on
    each side and gains ``output_padding`` at the bottom/right, as PyTorch's ConvTranspose2d:
    out = (H-1)S - 2P + d(F-1) + output_padding + 1."""

    filters: int
    kernel: Size
    stride: Size = 1
    padding: Padding = 0
    output_padding: Size = 0
    dilation: Size = 1
    activation: Optional[str] = None
    use_bias: bool = True
    keras_class = "Conv2DTranspose"


@dataclass(frozen=True)
class UpSample(Spec):
    """UpSampling2D: each pixel repeated ``size`` times along H and W (``interpolation="nearest"``)
    or bilinear interpolation (half-pixel centres, PyTorch's ``align_corners=False``)."""

    size: Size = 2
    interpolation: str = "nearest"
    keras_class = "UpSampling2D"


@dataclass(frozen=True)
class Crop(Spec):
    """Cropping2D: an int, an (h, w) pair or ((top, bottom), (left, right)) rows/columns removed."""

    cropping: Padding = 1
    keras_class = "Cropping2D"


@dataclass(frozen=True)
class LayerScale(Spec):
    """Per-channel learned scale y = gamma * x (ConvNeXt): C parameters, initialised to ``init_values``."""

    init_values: float = 1e-6
    keras_class = "LayerScale"


@dataclass(frozen=True)
class Rescale(Spec):
    """Rescaling: y = x * scale + offset, no parameters (``rescale/255``, ``rescale/127.5-1``)."""

    scale: float = 1.0
    offset: float = 0.0
    keras_class = "Rescaling"


@dataclass(frozen=True)
class Normalize(Spec):
    """Normalization: y = (x - mean) / sqrt(variance) per channel. Without ``mean``/``variance`` given
    they are the layer's state (2C + 1 non-trainable numbers with the sample count, set by ``adapt``);
    given as constants, the layer has no weights."""

    mean: Optional[tuple] = None
    variance: Optional[tuple] = None
    keras_class = "Normalization"


@dataclass(frozen=True)
class ZeroPad(Spec):
    """ZeroPadding2D: an int, an (h, w) pair or ((top, bottom), (left, right))."""

    padding: Padding = 1
    keras_class = "ZeroPadding2D"


@dataclass(frozen=True)
class Pool(Spec):
    """MaxPooling2D / AveragePooling2D; ``stride`` defaults to ``size``. As PyTorch's pools:
    ``dilation`` (max pooling), ``ceil_mode`` (the output size rounds up; an average divides by the
    window clipped to the padded input), padding at most half the pool size."""

    kind: str = "max"
    size: Size = 2
    stride: Optional[Size] = None
    padding: Padding = 0
    dilation: Size = 1
    ceil_mode: bool = False

    @property
    def keras_class(self):  # type: ignore[override]
        return "MaxPooling2D" if self.kind == "max" else "AveragePooling2D"


@dataclass(frozen=True)
class GlobalPool(Spec):
    kind: str = "avg"

    @property
    def keras_class(self):  # type: ignore[override]
        return "GlobalAveragePooling2D" if self.kind == "avg" else "GlobalMaxPooling2D"


@dataclass(frozen=True)
class Flatten(Spec):
    keras_class = "Flatten"


@dataclass(frozen=True)
class Dense(Spec):
    units: int
    activation: Optional[str] = None
    use_bias: bool = True
    keras_class = "Dense"


@dataclass(frozen=True)
class Dropout(Spec):
    rate: float = 0.5
    keras_class = "Dropout"


@dataclass(frozen=True)
class BatchNorm(Spec):
    """BatchNormalization: 2C trainable (gamma, beta) + 2C non-trainable (moving mean, variance).

    ``epsilon=None`` is kerascnn's (and PyTorch's) 1e-5; ``keras.applications`` ResNets use 1.001e-5.
    ``center=False`` drops beta, ``scale=False`` drops gamma (InceptionV3's BatchNorms: C trainable)."""

    epsilon: Optional[float] = None
    center: bool = True
    scale: bool = True
    keras_class = "BatchNormalization"


@dataclass(frozen=True)
class LayerNorm(Spec):
    """LayerNormalization over the channel axis (as ConvNeXt and PyTorch's LayerNorm(C)): 2C params
    (C without ``center`` or ``scale``)."""

    center: bool = True
    scale: bool = True
    keras_class = "LayerNormalization"


@dataclass(frozen=True)
class GroupNorm(Spec):
    """GroupNormalization: statistics over ``groups`` groups of channels; 2C params."""

    groups: int = 32
    center: bool = True
    scale: bool = True
    keras_class = "GroupNormalization"


@dataclass(frozen=True)
class SpatialDropout(Spec):
    """SpatialDropout2D: drops whole feature maps."""

    rate: float = 0.5
    keras_class = "SpatialDropout2D"


@dataclass(frozen=True)
class Activation(Spec):
    """``fn``: relu, sigmoid, tanh, softmax, leaky_relu (slope ``alpha``, default 0.01 as PyTorch),
    elu, gelu (exact, as PyTorch's default), swish."""

    fn: str = "relu"
    alpha: Optional[float] = None

    @property
    def keras_class(self):  # type: ignore[override]
        return "LeakyReLU" if self.fn == "leaky_relu" else "Activation"


@dataclass(frozen=True)
class Inception(Spec):
    """GoogLeNet's Inception module, channels as in Table 1 of Szegedy et al. 2014.

    ``c1``: 1x1 branch; ``c2 = (reduce, out)``: 1x1 then 3x3; ``c3 = (reduce, out)``:
    1x1 then 5x5; ``c4``: 3x3 max-pool (stride 1) then 1x1 "pool proj". Outputs are
    concatenated: c1 + c2[1] + c3[1] + c4 channels. Every convolution is followed by ReLU.
    """

    c1: int
    c2: tuple
    c3: tuple
    c4: int
    keras_class = "InceptionBlock"
    merge = "concat"
    post_activation = None

    def branches(self) -> list:
        n = self.name or "inception"
        return [
            [Conv(self.c1, 1, activation="relu", name=f"{n}_1x1")],
            [Conv(self.c2[0], 1, activation="relu", name=f"{n}_3x3_reduce"),
             Conv(self.c2[1], 3, padding=1, activation="relu", name=f"{n}_3x3")],
            [Conv(self.c3[0], 1, activation="relu", name=f"{n}_5x5_reduce"),
             Conv(self.c3[1], 5, padding=2, activation="relu", name=f"{n}_5x5")],
            [Pool("max", 3, 1, padding=1, name=f"{n}_pool"),
             Conv(self.c4, 1, activation="relu", name=f"{n}_pool_proj")],
        ]


@dataclass(frozen=True)
class Residual(Spec):
    """A ResNet block (He et al. 2015): ReLU(F(x) + shortcut(x)).

    Basic block: 3x3 conv (stride) -> BN -> ReLU -> 3x3 conv -> BN.
    Bottleneck: 1x1 -> BN -> ReLU -> 3x3 (stride, as torchvision's "v1.5") -> BN -> ReLU
    -> 1x1 (4x filters) -> BN. Convolutions have no bias (BN follows each).
    ``projection``: shortcut is 1x1 conv (stride) + BN instead of the identity; needed
    when the stride or the channel count changes.
    """

    filters: int
    stride: int = 1
    bottleneck: bool = False
    projection: bool = False
    fused: bool = False       # BatchNorm folded into the convolutions (inference only)
    v1: bool = False          # keras.applications' ResNet v1: stride on the first 1x1, biased convs
    keras_class = "ResidualBlock"
    merge = "add"
    post_activation = "relu"

    @property
    def out_channels(self) -> int:
        return self.filters * 4 if self.bottleneck else self.filters

    def branches(self) -> list:
        n = self.name or "block"
        f, s = self.filters, self.stride
        if self.v1:  # keras.applications.resnet: biased convs, BN epsilon 1.001e-5, stride on the 1x1
            bias, bn = True, (lambda name: BatchNorm(epsilon=KERAS_RESNET_BN_EPSILON, name=name))
        else:
            bias, bn = False, (lambda name: BatchNorm(name=name))
        if self.bottleneck:
            s1, s2 = (s, 1) if self.v1 else (1, s)
            main = [
                Conv(f, 1, s1, use_bias=bias, name=f"{n}_1_conv"), bn(f"{n}_1_bn"),
                Activation("relu", name=f"{n}_1_relu"),
                Conv(f, 3, s2, padding=1, use_bias=bias, name=f"{n}_2_conv"), bn(f"{n}_2_bn"),
                Activation("relu", name=f"{n}_2_relu"),
                Conv(4 * f, 1, use_bias=bias, name=f"{n}_3_conv"), bn(f"{n}_3_bn"),
            ]
        else:
            main = [
                Conv(f, 3, s, padding=1, use_bias=bias, name=f"{n}_1_conv"), bn(f"{n}_1_bn"),
                Activation("relu", name=f"{n}_1_relu"),
                Conv(f, 3, padding=1, use_bias=bias, name=f"{n}_2_conv"), bn(f"{n}_2_bn"),
            ]
        if self.projection:
            shortcut = [Conv(self.out_channels, 1, s, use_bias=bias, name=f"{n}_0_conv"), bn(f"{n}_0_bn")]
        else:
            shortcut = []  # identity
        if self.fused:
            main, shortcut = fold_bn_specs(main), fold_bn_specs(shortcut)
        return [main, shortcut]


KERAS_RESNET_BN_EPSILON = 1.001e-5  # keras.applications.resnet's BatchNormalization(epsilon=...)


def foldable(spec) -> bool:
    """Whether a BatchNorm right after ``spec`` can be folded into it: a linear convolution
    (plain, grouped, depthwise or separable) or dense layer."""
    return (isinstance(spec, (Conv, DepthwiseConv, SeparableConv, Dense))
            and getattr(spec, "activation", None) in (None, "linear"))


def fold_bn_specs(specs: list) -> list:
    """The inference-time stack: every BatchNorm that follows a linear Conv/Dense (depthwise and
    separable included; no activation between them) is folded into it (the layer gains a bias,
    the BatchNorm disappears); residual blocks are marked ``fused``."""
    out = []
    for spec in specs:
        if isinstance(spec, BatchNorm) and out and foldable(out[-1]):
            out[-1] = replace(out[-1], use_bias=True)
            continue
        if isinstance(spec, Residual):
            spec = replace(spec, fused=True)
        if isinstance(spec, Branches):
            spec = replace(spec, paths=tuple(tuple(fold_bn_specs(list(p))) for p in spec.paths))
        out.append(spec)
    return out


@dataclass(frozen=True)
class Branches(Spec):
    """A block written in the spec language: parallel ``paths`` (tuples of specs) merged by
    ``"add"`` (a residual block; an empty path is the identity shortcut) or ``"concat"``
    (an Inception module, along channels)."""

    paths: tuple = ()
    merge: str = "add"
    keras_class = "BranchBlock"
    post_activation = None

    @property
    def auto_base(self) -> str:
        return "res" if self.merge == "add" else "cat"

    def branches(self) -> list:
        """The paths with layer names ``<block>_<path>_<layer>`` (e.g. ``res_0_conv2d``)."""
        n = self.name or self.auto_base
        return [[s.named(f"{n}_{i}_{s.name}") for s in auto_name(list(path))]
                for i, path in enumerate(self.paths)]

    def to_dict(self) -> dict:
        return {"type": "Branches", "name": self.name, "merge": self.merge,
                "paths": [[s.to_dict() for s in path] for path in self.paths]}


BLOCK_TYPES = (Inception, Residual, Branches)
SPEC_TYPES = {cls.__name__: cls for cls in
              (Conv, DepthwiseConv, SeparableConv, ConvTranspose, ZeroPad, Crop, UpSample, Pool, GlobalPool,
               Flatten, Dense, Dropout, SpatialDropout, BatchNorm, LayerNorm, GroupNorm, LayerScale, Rescale,
               Normalize, Activation, Inception, Residual, Branches)}


def _tuples(v):
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


def spec_from_dict(d: dict) -> Spec:
    d = dict(d)
    cls = SPEC_TYPES[d.pop("type")]
    names = {f.name for f in fields(cls)}
    if cls is Branches:
        d["paths"] = tuple(tuple(spec_from_dict(s) for s in path) for path in d.get("paths", ()))
    else:
        d = {k: _tuples(v) for k, v in d.items()}
    return cls(**{k: v for k, v in d.items() if k in names})


def auto_name(specs: list) -> list:
    """Give unnamed specs Keras-style names (``conv2d``, ``conv2d_1``, ``dense`` ...)."""
    counts: dict = {}
    out = []
    for s in specs:
        if s.name is None:
            base = getattr(s, "auto_base", None) or _snake(s.keras_class)
            k = counts.get(base, 0)
            counts[base] = k + 1
            s = s.named(base if k == 0 else f"{base}_{k}")
        out.append(s)
    return out
