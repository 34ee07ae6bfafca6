"""AlexNet. Krizhevsky, Sutskever & Hinton, "ImageNet Classification with Deep Convolutional
Neural Networks", NeurIPS 2012; ``variant=torchvision``: Krizhevsky, "One weird trick for
parallelizing convolutional neural networks", arXiv:1404.5997 (torchvision's AlexNet)."""
from kerascnn.errors import ConfigError
from kerascnn.models.width import check_units, check_width, scaled
from kerascnn.models.base import Published, register_model
from kerascnn.specs import Conv, Dense, Dropout, Flatten, Pool

VARIANTS = ("paper", "torchvision")


@register_model(family="alexnet", paper="Krizhevsky et al., NeurIPS 2012", year=2012,
                default_input=(227, 227, 3), natural_inputs=((("variant", "torchvision"), (224, 224, 3)),),
                published=(
                    Published("the count commonly quoted for the paper's layer sizes as one tower "
                              "(no GPU split) at 227x227", params=62_378_344),
                    Published("Sze et al., 'Efficient Processing of Deep Neural Networks', Proc. IEEE 2017, "
                              "Table III: 61M weights, 724M MACs", params=60_965_224, macs=724_000_000,
                              options=(("grouped", True),)),
                    Published("torchvision.models.alexnet (weights table: 61,100,840 params) at 224x224",
                              params=61_100_840, input_shape=(224, 224, 3),
                              options=(("variant", "torchvision"),)),
                ))
def alexnet(input_shape, num_classes, grouped=False, variant="paper", width=1.0, hidden=4096):
    """AlexNet, single tower: 5 convolutions and 3 dense layers, 62,378,344 params at 227x227x3.

    ``grouped=true`` reproduces the paper's two-GPU split: conv2, conv4 and conv5 see only
    the half of the channels on their own GPU (groups=2), 60,965,224 params. Local response
    normalisation is left out (it has no parameters and later work dropped it).
    ``variant=torchvision`` is torchvision's AlexNet ("one weird trick": 64, 192, 384, 256, 256
    channels, 11x11/4 pad 2, dropout before the dense layers, 61,100,840 params at 224x224); its
    ``AdaptiveAvgPool2d((6, 6))`` is the identity on the 6x6 map of a 224x224 input and an
    average pool on a map that is a multiple of 6; other maps are flattened as they are.
    ``width``/``hidden``: channel multiplier and hidden dense units (4096). The natural input is the
    paper's 227x227x3, and torchvision's 224x224x3 for ``variant=torchvision``.
    """
    width, hidden = check_width(width, "alexnet"), check_units(hidden, "hidden", "alexnet")
    if variant not in VARIANTS:
        raise ConfigError(f"alexnet variant must be one of {', '.join(VARIANTS)}; received {variant!r}")
    s = lambda c: scaled(c, width)
    if variant == "torchvision":
        if grouped:
            raise ConfigError("alexnet: variant=torchvision has no grouped convolutions; drop grouped")
        features = [
            Conv(s(64), 11, 4, padding=2, activation="relu", name="conv1"), Pool("max", 3, 2, name="pool1"),
            Conv(s(192), 5, padding=2, activation="relu", name="conv2"), Pool("max", 3, 2, name="pool2"),
            Conv(s(384), 3, padding=1, activation="relu", name="conv3"),
            Conv(s(256), 3, padding=1, activation="relu", name="conv4"),
            Conv(s(256), 3, padding=1, activation="relu", name="conv5"), Pool("max", 3, 2, name="pool5"),
        ]
        features += _adaptive_avg_6x6(features, input_shape)
    else:
        g = 2 if grouped else 1
        features = [
            Conv(s(96), 11, 4, activation="relu", name="conv1"), Pool("max", 3, 2, name="pool1"),
            Conv(s(256), 5, padding=2, groups=g, activation="relu", name="conv2"), Pool("max", 3, 2, name="pool2"),
            Conv(s(384), 3, padding=1, activation="relu", name="conv3"),
            Conv(s(384), 3, padding=1, groups=g, activation="relu", name="conv4"),
            Conv(s(256), 3, padding=1, groups=g, activation="relu", name="conv5"), Pool("max", 3, 2, name="pool5"),
        ]
    return features + [
        Flatten(name="flatten"),
        Dropout(0.5, name="drop6"), Dense(hidden, "relu", name="fc6"),
        Dropout(0.5, name="drop7"), Dense(hidden, "relu", name="fc7"),
        Dense(num_classes, "softmax", name="fc8"),
    ]


def _adaptive_avg_6x6(features, input_shape) -> list:
    """torchvision's AdaptiveAvgPool2d((6, 6)) where it is a plain layer: nothing on a 6x6 map, an
    average pool on a multiple of 6. Other maps are flattened as they are (the adaptive pool would need
    overlapping windows): the model trains, and torchvision weights load its convolutions while the
    dense head starts fresh (``kerascnn.pretrained.torchvision`` reports it)."""
    from kerascnn.analysis import analyze

    h, w, _ = analyze(features, input_shape).layers[-1].output_shape
    if (h, w) == (6, 6) or h % 6 or w % 6:
        return []
    return [Pool("avg", (h // 6, w // 6), name="avgpool")]
