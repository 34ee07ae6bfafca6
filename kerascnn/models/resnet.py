"""ResNet. He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016
(arXiv:1512.03385).

Convolutions have no bias and are followed by BatchNorm, as in torchvision and
``keras.applications``; the bottleneck's stride sits on its 3x3 convolution
(torchvision's "ResNet v1.5"). ``small_input=true`` swaps the 7x7/2 stem and its max-pool
for one 3x3/1 convolution, the variant trained on 32x32 CIFAR images. ``variant=keras``
(alias ``v1``) is ``keras.applications.ResNet50`` exactly, so its weight files load
(``kerascnn.pretrained``): ResNet v1 with the stride on the block's first 1x1 convolution,
biased convolutions and BatchNorm epsilon 1.001e-5 (25,636,712 params). The default (v1.5)
is torchvision's ResNet layer for layer (its max-pool pads with -inf, as kerascnn's), so
torchvision's and timm's ResNet checkpoints load (``kerascnn.pretrained.torchvision``).
``-o width=W`` scales every channel count (``kerascnn.models.width``).
"""
from kerascnn.errors import ConfigError
from kerascnn.models.width import check_width, scaled
from kerascnn.models.base import Published, register_model
from kerascnn.specs import (
    KERAS_RESNET_BN_EPSILON,
    Activation,
    BatchNorm,
    Conv,
    Dense,
    GlobalPool,
    Pool,
    Residual,
)

VARIANTS = {"v1.5": False, "torchvision": False, "keras": True, "v1": True}


def is_keras_variant(variant) -> bool:
    """``variant`` option -> True for keras.applications' v1 (``keras``/``v1``), False for v1.5."""
    try:
        return VARIANTS[str(variant).lower()]
    except KeyError:
        raise ConfigError(f"variant must be one of {', '.join(VARIANTS)}; received {variant!r}") from None

TORCHVISION = "torchvision model docs (weights tables: params, GFLOPS = multiply-adds)"

RESNET_STAGES = {
    "resnet18": (False, (2, 2, 2, 2)),
    "resnet34": (False, (3, 4, 6, 3)),
    "resnet50": (True, (3, 4, 6, 3)),
}


def resnet_stack(blocks, bottleneck, num_classes, small_input=False, v1=False, width=1.0):
    c64 = scaled(64, width)
    if v1:  # keras.applications.resnet.ResNet: ZeroPadding2D(3) + 7x7/2 valid biased conv, padded max-pool
        if small_input:
            raise ConfigError("variant=keras reproduces keras.applications' 224x224 stem; drop small_input")
        stem = [Conv(c64, 7, 2, padding=3, name="conv1_conv"),
                BatchNorm(epsilon=KERAS_RESNET_BN_EPSILON, name="conv1_bn"),
                Activation("relu", name="conv1_relu"), Pool("max", 3, 2, padding=1, name="pool1_pool")]
    elif small_input:
        stem = [Conv(c64, 3, 1, padding=1, use_bias=False, name="conv1_conv"), BatchNorm(name="conv1_bn"),
                Activation("relu", name="conv1_relu")]
    else:
        stem = [Conv(c64, 7, 2, padding=3, use_bias=False, name="conv1_conv"), BatchNorm(name="conv1_bn"),
                Activation("relu", name="conv1_relu"), Pool("max", 3, 2, padding=1, name="pool1")]
    layers, channels = stem, c64
    for stage, (n, filters) in enumerate(zip(blocks, [scaled(c, width) for c in (64, 128, 256, 512)]), start=2):
        for i in range(n):
            stride = 2 if (i == 0 and stage > 2) else 1
            out = filters * 4 if bottleneck else filters
            layers.append(Residual(filters, stride, bottleneck, projection=(stride != 1 or channels != out),
                                   v1=v1, name=f"conv{stage}_block{i + 1}"))
            channels = out
    return layers + [GlobalPool("avg", name="avg_pool"), Dense(num_classes, "softmax", name="predictions")]


@register_model(family="resnet", paper="He et al., CVPR 2016", year=2015, default_input=(224, 224, 3),
                published=(Published(TORCHVISION, trainable_params=11_689_512, macs=1_810_000_000),))
def resnet18(input_shape, num_classes, small_input=False, width=1.0):
    """ResNet-18: basic blocks (2, 2, 2, 2), 11,689,512 trainable params at 224x224x3."""
    return resnet_stack((2, 2, 2, 2), False, num_classes, small_input, width=check_width(width, "resnet18"))


@register_model(family="resnet", paper="He et al., CVPR 2016", year=2015, default_input=(224, 224, 3),
                published=(Published(TORCHVISION, trainable_params=21_797_672, macs=3_660_000_000),))
def resnet34(input_shape, num_classes, small_input=False, width=1.0):
    """ResNet-34: basic blocks (3, 4, 6, 3), 21,797,672 trainable params at 224x224x3."""
    return resnet_stack((3, 4, 6, 3), False, num_classes, small_input, width=check_width(width, "resnet34"))


@register_model(family="resnet", paper="He et al., CVPR 2016", year=2015, default_input=(224, 224, 3),
                published=(Published(TORCHVISION, trainable_params=25_557_032, macs=4_090_000_000),
                           Published("keras.applications.ResNet50(weights=None).count_params()",
                                     params=25_636_712, options=(("variant", "keras"),))))
def resnet50(input_shape, num_classes, small_input=False, variant="v1.5", width=1.0):
    """ResNet-50: bottleneck blocks (3, 4, 6, 3), 25,557,032 trainable params at 224x224x3."""
    return resnet_stack((3, 4, 6, 3), True, num_classes, small_input, v1=is_keras_variant(variant),
                        width=check_width(width, "resnet50"))
