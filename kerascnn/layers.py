"""Custom Keras blocks for the architectures that are not a plain chain.

``InceptionBlock`` (GoogLeNet) and ``ResidualBlock`` (ResNet) sit inside a
``keras.Sequential`` as single layers, the way Dive into Deep Learning writes
them. Each is built from the branch lists of its spec (``kerascnn.specs``), so
the analysis and the Keras layer share one description; ``inner_layers``
exposes the sublayers (named like the analysis's child rows). Both serialize:
``model.save("x.keras")`` and ``keras.models.load_model`` round-trip.
Only the backend-neutral ``keras.ops`` API is used.
"""
from __future__ import annotations

import keras

from kerascnn import specs as S
from kerascnn.exact_layers import NegInfPadding2D, pad_layer  # noqa: F401  (saved models and old imports)
from kerascnn.rules import rule_for


def spec_layers(spec: S.Spec, dtype=None) -> list:
    """The Keras layer(s) for one spec: a block (Inception, residual, ``res``/``cat``) is one layer of
    this module built from its branch specs; any other kind's layers come from its rule
    (``kerascnn.rules``; an explicit ``<name>_pad`` first where the lecture's padding differs from
    Keras's ``"same"``). The rules never import this module, so there is no import cycle."""
    rule = rule_for(spec)
    if not rule.is_block:
        return rule.keras_layers(dtype)
    kw = {"name": spec.name} if dtype is None else {"name": spec.name, "dtype": dtype}
    if isinstance(spec, S.Inception):
        return [InceptionBlock(spec.c1, spec.c2, spec.c3, spec.c4, **kw)]
    if isinstance(spec, S.Residual):
        return [ResidualBlock(spec.filters, spec.stride, spec.bottleneck, spec.projection, spec.fused,
                              v1=spec.v1, **kw)]
    return [BranchBlock(spec.paths, spec.merge, **kw)]


def flat_layers(model) -> list:
    """Every layer of a kerascnn model, each block followed by its ``inner_layers`` (the rows of
    the analysis, by name)."""
    out = []
    for layer in model.layers:
        out.append(layer)
        out.extend(getattr(layer, "inner_layers", []))
    return out


class _BranchBlock(keras.layers.Layer):
    """Runs each branch (a list of layers) on the same input and merges the results."""

    def _make_branches(self, spec: S.Spec):
        self.spec = spec
        self.branch_sizes = []
        inner = []
        for branch in spec.branches():
            layers = [layer for sub in branch for layer in spec_layers(sub)]
            self.branch_sizes.append(len(layers))
            inner.extend(layers)
        self.inner = inner  # a flat, tracked list: weights are saved under this attribute

    def _branches(self):
        i = 0
        for n in self.branch_sizes:
            yield self.inner[i:i + n]
            i += n

    @property
    def inner_layers(self) -> list:
        return list(self.inner)

    def build(self, input_shape):
        for branch in self._branches():
            shape = input_shape
            for layer in branch:
                layer.build(shape)
                shape = layer.compute_output_shape(shape)
        self.built = True

    def _branch_outputs(self, x, training=None):
        outs = []
        for branch in self._branches():
            y = x
            for layer in branch:
                y = layer(y, training=training)
            outs.append(y)
        return outs

    def _branch_shapes(self, input_shape):
        shapes = []
        for branch in self._branches():
            shape = input_shape
            for layer in branch:
                shape = layer.compute_output_shape(shape)
            shapes.append(tuple(shape))
        return shapes


@keras.saving.register_keras_serializable(package="kerascnn")
class InceptionBlock(_BranchBlock):
    """Inception v1 module: 1x1 | 1x1->3x3 | 1x1->5x5 | 3x3 max-pool->1x1, concatenated.

    Args follow Table 1 of Szegedy et al. 2014: ``c1``, ``c2=(#3x3 reduce, #3x3)``,
    ``c3=(#5x5 reduce, #5x5)``, ``c4`` (pool proj).
    """

    def __init__(self, c1, c2, c3, c4, **kwargs):
        super().__init__(**kwargs)
        self.c1, self.c2, self.c3, self.c4 = int(c1), tuple(c2), tuple(c3), int(c4)
        self._make_branches(S.Inception(self.c1, self.c2, self.c3, self.c4, name=self.name))

    def call(self, x, training=None):
        return keras.ops.concatenate(self._branch_outputs(x, training), axis=-1)

    def compute_output_shape(self, input_shape):
        shapes = self._branch_shapes(input_shape)
        return shapes[0][:-1] + (sum(s[-1] for s in shapes),)

    def get_config(self):
        return {**super().get_config(), "c1": self.c1, "c2": list(self.c2), "c3": list(self.c3), "c4": self.c4}


@keras.saving.register_keras_serializable(package="kerascnn")
class ResidualBlock(_BranchBlock):
    """ResNet block: ReLU(F(x) + shortcut(x)); basic (two 3x3) or bottleneck (1x1-3x3-1x1).

    ``projection=True`` uses a strided 1x1 conv + BN shortcut, else the identity.
    """

    def __init__(self, filters, strides=1, bottleneck=False, projection=False, fused=False, v1=False, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.strides = int(filters), int(strides)
        self.bottleneck, self.projection, self.fused = bool(bottleneck), bool(projection), bool(fused)
        self.v1 = bool(v1)
        self._make_branches(S.Residual(self.filters, self.strides, self.bottleneck, self.projection, self.fused,
                                       v1=self.v1, name=self.name))

    def call(self, x, training=None):
        main, shortcut = self._branch_outputs(x, training)
        return keras.ops.relu(main + keras.ops.cast(shortcut, main.dtype))

    def compute_output_shape(self, input_shape):
        return self._branch_shapes(input_shape)[0]

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "strides": self.strides,
                "bottleneck": self.bottleneck, "projection": self.projection, "fused": self.fused, "v1": self.v1}


@keras.saving.register_keras_serializable(package="kerascnn")
class BranchBlock(_BranchBlock):
    """A block written in the spec language: ``merge="add"`` (residual; an empty path is the
    identity) or ``"concat"`` (Inception-style, along channels)."""

    def __init__(self, paths, merge="add", **kwargs):
        super().__init__(**kwargs)
        self.paths = tuple(tuple(S.spec_from_dict(s) if isinstance(s, dict) else s for s in p) for p in paths)
        self.merge = merge
        self._make_branches(S.Branches(self.paths, merge, name=self.name))

    def call(self, x, training=None):
        outs = self._branch_outputs(x, training)
        if self.merge == "concat":
            return keras.ops.concatenate(outs, axis=-1)
        y = outs[0]
        for o in outs[1:]:
            y = y + keras.ops.cast(o, y.dtype)
        return y

    def compute_output_shape(self, input_shape):
        shapes = self._branch_shapes(input_shape)
        if self.merge == "concat":
            return shapes[0][:-1] + (sum(s[-1] for s in shapes),)
        return shapes[0]

    def get_config(self):
        return {**super().get_config(), "merge": self.merge,
                "paths": [[s.to_dict() for s in p] for p in self.paths]}


# torchvision / timm ImageNet statistics (RGB, on [0, 1] pixels); keras.applications' Caffe means (BGR, 0-255)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="kerascnn")
class ImagenetPreprocess(keras.layers.Layer):
    """The preprocessing that goes with pretrained weights, inside the model, on kerascnn's [0, 1] pixels:
    ``caffe`` = ``keras.applications.vgg16/resnet.preprocess_input`` (x255, RGB->BGR, minus the BGR means);
    ``torch`` = torchvision's (x - mean) / std (``mean``/``std``: ImageNet's unless a timm checkpoint has
    others); ``tf`` = keras.applications' "tf" mode, (x - 0.5) / 0.5 in [-1, 1] (torchvision's GoogLeNet
    ImageNet pipeline: mean/std then ``transform_input``); ``raw`` = x255, the 0..255 pixels of the
    keras.applications models that preprocess inside (EfficientNet, EfficientNetV2, ConvNeXt, MobileNetV3).
    Being a layer, it is saved in best.keras and the SavedModel, so train, evaluate, predict and the
    export apply it identically."""

    MODES = ("caffe", "torch", "tf", "raw")

    def __init__(self, mode="caffe", mean=None, std=None, **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"preprocessing mode must be one of {', '.join(self.MODES)}; received {mode!r}")
        self.mode = mode
        self.mean = tuple(float(v) for v in (mean or IMAGENET_MEAN))
        self.std = tuple(float(v) for v in (std or IMAGENET_STD))

    def call(self, x):
        if self.mode == "caffe":
            return x[..., ::-1] * 255.0 - keras.ops.convert_to_tensor(CAFFE_BGR_MEAN, dtype=x.dtype)
        if self.mode == "tf":
            return (x - 0.5) / 0.5
        if self.mode == "raw":
            return x * 255.0
        mean = keras.ops.convert_to_tensor(self.mean, dtype=x.dtype)
        return (x - mean) / keras.ops.convert_to_tensor(self.std, dtype=x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = {**super().get_config(), "mode": self.mode}
        if self.mode == "torch" and (self.mean, self.std) != (IMAGENET_MEAN, IMAGENET_STD):
            config.update(mean=list(self.mean), std=list(self.std))
        return config
