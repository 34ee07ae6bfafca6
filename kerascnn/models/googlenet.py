"""GoogLeNet (Inception v1). Szegedy et al., "Going Deeper with Convolutions", CVPR 2015
(arXiv:1409.4842). Channel numbers are the paper's Table 1; auxiliary classifiers are off.

``variant=torchvision`` is ``torchvision.models.GoogLeNet`` layer for layer, so its checkpoints
load (``kerascnn.pretrained.torchvision``): every convolution is its ``BasicConv2d`` (conv
without bias, BatchNorm with epsilon 0.001, ReLU), the "5x5" branch is a 3x3 convolution (kept
by torchvision for compatibility with its weights), the stem and stage max-pools use
``ceil_mode=True`` (an extra -inf row/column at the bottom/right where the window would not
fit), the 4e->5a pool is 2x2/2, dropout 0.2. Its ``transform_input`` (on for the ImageNet
weights) is a preprocessing: see ``--preprocessing tf`` in docs/transfer-learning.md.
"""
import math

from kerascnn.errors import ConfigError
from kerascnn.models.width import check_width, scaled
from kerascnn.models.base import Published, register_model
from kerascnn.specs import (
    Activation,
    BatchNorm,
    Branches,
    Conv,
    Dense,
    Dropout,
    GlobalPool,
    Inception,
    Pool,
)

# Table 1: name -> (#1x1, (#3x3 reduce, #3x3), (#5x5 reduce, #5x5), pool proj)
INCEPTION_TABLE = {
    "inception_3a": (64, (96, 128), (16, 32), 32),
    "inception_3b": (128, (128, 192), (32, 96), 64),
    "inception_4a": (192, (96, 208), (16, 48), 64),
    "inception_4b": (160, (112, 224), (24, 64), 64),
    "inception_4c": (128, (128, 256), (24, 64), 64),
    "inception_4d": (112, (144, 288), (32, 64), 64),
    "inception_4e": (256, (160, 320), (32, 128), 128),
    "inception_5a": (256, (160, 320), (32, 128), 128),
    "inception_5b": (384, (192, 384), (48, 128), 128),
}
VARIANTS = ("paper", "torchvision")
TORCHVISION_BN_EPSILON = 1e-3   # torchvision.models.googlenet.BasicConv2d


def _inception(name, width):
    c1, c2, c3, c4 = INCEPTION_TABLE[name]
    s = lambda c: scaled(c, width)
    return Inception(s(c1), (s(c2[0]), s(c2[1])), (s(c3[0]), s(c3[1])), s(c4), name=name)


@register_model(family="googlenet", paper="Szegedy et al., CVPR 2015", year=2014, default_input=(224, 224, 3),
                published=(Published("Szegedy et al. 2015, Table 1 filter columns (weights + biases, no "
                                     "auxiliary classifiers)", params=6_998_552),
                           Published("torchvision.models.googlenet (weights table: 6,624,904 params)",
                                     trainable_params=6_624_904, options=(("variant", "torchvision"),))))
def googlenet(input_shape, num_classes, variant="paper", width=1.0):
    """GoogLeNet: stem, nine Inception modules (3a-5b), global average pooling, dropout 0.4, linear.

    ``variant=torchvision``: torchvision's GoogLeNet (6,624,904 params; module docstring).
    ``width``: channel multiplier."""
    width = check_width(width, "googlenet")
    if variant not in VARIANTS:
        raise ConfigError(f"googlenet variant must be one of {', '.join(VARIANTS)}; received {variant!r}")
    if variant == "torchvision":
        return _torchvision(input_shape, num_classes, width)
    s = lambda c: scaled(c, width)
    return [
        Conv(s(64), 7, 2, padding=3, activation="relu", name="conv1_7x7"),
        Pool("max", 3, 2, padding="same", name="pool1"),
        Conv(s(64), 1, activation="relu", name="conv2_3x3_reduce"),
        Conv(s(192), 3, padding=1, activation="relu", name="conv2_3x3"),
        Pool("max", 3, 2, padding="same", name="pool2"),
        _inception("inception_3a", width), _inception("inception_3b", width),
        Pool("max", 3, 2, padding="same", name="pool3"),
        _inception("inception_4a", width), _inception("inception_4b", width), _inception("inception_4c", width),
        _inception("inception_4d", width), _inception("inception_4e", width),
        Pool("max", 3, 2, padding="same", name="pool4"),
        _inception("inception_5a", width), _inception("inception_5b", width),
        GlobalPool("avg", name="avg_pool"), Dropout(0.4, name="dropout"),
        Dense(num_classes, "softmax", name="predictions"),
    ]


def _basic(filters, kernel, name, padding=0, stride=1):
    """torchvision's BasicConv2d: conv (no bias) -> BatchNorm(eps 0.001) -> ReLU; names map to its keys."""
    return [Conv(filters, kernel, stride, padding=padding, use_bias=False, name=f"{name}_conv"),
            BatchNorm(epsilon=TORCHVISION_BN_EPSILON, name=f"{name}_bn"), Activation("relu", name=f"{name}_relu")]


def _tv_inception(name, width):
    """torchvision's Inception: its branch1..branch4 (branch3's "5x5" is 3x3), concatenated. Layer names
    ``<block>_<path>_<torchvision module path with _>``, e.g. inception3a_1_branch2_0_conv."""
    c1, (r3, c3), (r5, c5), c4 = (INCEPTION_TABLE[name][0], *INCEPTION_TABLE[name][1:3], INCEPTION_TABLE[name][3])
    s = lambda c: scaled(c, width)
    return Branches(paths=(
        tuple(_basic(s(c1), 1, "branch1")),
        tuple(_basic(s(r3), 1, "branch2_0") + _basic(s(c3), 3, "branch2_1", padding=1)),
        tuple(_basic(s(r5), 1, "branch3_0") + _basic(s(c5), 3, "branch3_1", padding=1)),
        (Pool("max", 3, 1, padding=1, name="branch4_0"), *_basic(s(c4), 1, "branch4_1")),
    ), merge="concat", name=name.replace("_", ""))


def _ceil_pool(layers, input_shape, size, stride, name):
    """MaxPool2d(size, stride, ceil_mode=True): -inf padding at the bottom/right so the last, partial
    window counts (PyTorch drops a window that would start past the input)."""
    from kerascnn.analysis import analyze

    hw = analyze(layers, input_shape).layers[-1].output_shape[:2]
    extra = []
    for n in hw:
        out = math.ceil((n - size) / stride) + 1
        if (out - 1) * stride >= n:
            out -= 1
        extra.append(max(0, (out - 1) * stride + size - n))
    pad = ((0, extra[0]), (0, extra[1])) if any(extra) else 0
    return Pool("max", size, stride, padding=pad, name=name)


def _torchvision(input_shape, num_classes, width):
    s = lambda c: scaled(c, width)
    layers = _basic(s(64), 7, "conv1", padding=3, stride=2)
    layers.append(_ceil_pool(layers, input_shape, 3, 2, "maxpool1"))
    layers += _basic(s(64), 1, "conv2") + _basic(s(192), 3, "conv3", padding=1)
    layers.append(_ceil_pool(layers, input_shape, 3, 2, "maxpool2"))
    layers += [_tv_inception("inception_3a", width), _tv_inception("inception_3b", width)]
    layers.append(_ceil_pool(layers, input_shape, 3, 2, "maxpool3"))
    layers += [_tv_inception(f"inception_4{c}", width) for c in "abcde"]
    layers.append(_ceil_pool(layers, input_shape, 2, 2, "maxpool4"))
    layers += [_tv_inception("inception_5a", width), _tv_inception("inception_5b", width)]
    return layers + [GlobalPool("avg", name="avgpool"), Dropout(0.2, name="dropout"),
                     Dense(num_classes, "softmax", name="fc")]
