"""Network in Network. Lin, Chen & Yan, "Network In Network", ICLR 2014 (arXiv:1312.4400),
in the form of Dive into Deep Learning, section 8.3."""
from kerascnn.models.base import register_model
from kerascnn.specs import Activation, Conv, Dropout, GlobalPool, Pool


def nin_block(name, channels, kernel, stride, padding):
    """One KxK convolution followed by two 1x1 convolutions (per-pixel MLPs), all ReLU."""
    return [
        Conv(channels, kernel, stride, padding, activation="relu", name=f"{name}_conv"),
        Conv(channels, 1, activation="relu", name=f"{name}_1x1a"),
        Conv(channels, 1, activation="relu", name=f"{name}_1x1b"),
    ]


@register_model(family="nin", paper="Lin et al., ICLR 2014", year=2013, default_input=(224, 224, 3))
def nin(input_shape, num_classes):
    """NiN: four NiN blocks with 1x1 convolutions, no dense layer, global average pooling."""
    return [
        *nin_block("nin1", 96, 11, 4, 0), Pool("max", 3, 2, name="pool1"),
        *nin_block("nin2", 256, 5, 1, 2), Pool("max", 3, 2, name="pool2"),
        *nin_block("nin3", 384, 3, 1, 1), Pool("max", 3, 2, name="pool3"),
        Dropout(0.5, name="dropout"),
        *nin_block("nin4", num_classes, 3, 1, 1),
        GlobalPool("avg", name="global_pool"), Activation("softmax", name="predictions"),
    ]
