"""GoogLeNet (Inception v1). Szegedy et al., "Going Deeper with Convolutions", CVPR 2015
(arXiv:1409.4842). Channel numbers are the paper's Table 1; auxiliary classifiers are off."""
from kerascnn.registry import Published, register_model
from kerascnn.specs import Conv, Dense, Dropout, GlobalPool, Inception, Pool

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


def _inception(name):
    return Inception(*INCEPTION_TABLE[name], name=name)


@register_model(family="googlenet", paper="Szegedy et al., CVPR 2015", year=2014, default_input=(224, 224, 3),
                published=(Published("Szegedy et al. 2015, Table 1 filter columns (weights + biases, no "
                                     "auxiliary classifiers)", params=6_998_552),))
def googlenet(input_shape, num_classes):
    """GoogLeNet: stem, nine Inception modules (3a-5b), global average pooling, dropout 0.4, linear."""
    return [
        Conv(64, 7, 2, padding=3, activation="relu", name="conv1_7x7"),
        Pool("max", 3, 2, padding="same", name="pool1"),
        Conv(64, 1, activation="relu", name="conv2_3x3_reduce"),
        Conv(192, 3, padding=1, activation="relu", name="conv2_3x3"),
        Pool("max", 3, 2, padding="same", name="pool2"),
        _inception("inception_3a"), _inception("inception_3b"),
        Pool("max", 3, 2, padding="same", name="pool3"),
        _inception("inception_4a"), _inception("inception_4b"), _inception("inception_4c"),
        _inception("inception_4d"), _inception("inception_4e"),
        Pool("max", 3, 2, padding="same", name="pool4"),
        _inception("inception_5a"), _inception("inception_5b"),
        GlobalPool("avg", name="avg_pool"), Dropout(0.4, name="dropout"),
        Dense(num_classes, "softmax", name="predictions"),
    ]
