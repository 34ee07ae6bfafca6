"""AlexNet. Krizhevsky, Sutskever & Hinton, "ImageNet Classification with Deep Convolutional
Neural Networks", NeurIPS 2012."""
from kerascnn.registry import Published, register_model
from kerascnn.specs import Conv, Dense, Dropout, Flatten, Pool


@register_model(family="alexnet", paper="Krizhevsky et al., NeurIPS 2012", year=2012,
                default_input=(227, 227, 3), published=(
                    Published("the count commonly quoted for the paper's layer sizes as one tower "
                              "(no GPU split) at 227x227", params=62_378_344),
                    Published("Sze et al., 'Efficient Processing of Deep Neural Networks', Proc. IEEE 2017, "
                              "Table III: 61M weights, 724M MACs", params=60_965_224, macs=724_000_000,
                              options=(("grouped", True),)),
                ))
def alexnet(input_shape, num_classes, grouped=False):
    """AlexNet, single tower: 5 convolutions and 3 dense layers, 62,378,344 params at 227x227x3.

    ``grouped=true`` reproduces the paper's two-GPU split: conv2, conv4 and conv5 see only
    the half of the channels on their own GPU (groups=2), 60,965,224 params. Local response
    normalisation is left out (it has no parameters and later work dropped it).
    """
    g = 2 if grouped else 1
    return [
        Conv(96, 11, 4, activation="relu", name="conv1"), Pool("max", 3, 2, name="pool1"),
        Conv(256, 5, padding=2, groups=g, activation="relu", name="conv2"), Pool("max", 3, 2, name="pool2"),
        Conv(384, 3, padding=1, activation="relu", name="conv3"),
        Conv(384, 3, padding=1, groups=g, activation="relu", name="conv4"),
        Conv(256, 3, padding=1, groups=g, activation="relu", name="conv5"), Pool("max", 3, 2, name="pool5"),
        Flatten(name="flatten"),
        Dropout(0.5, name="drop6"), Dense(4096, "relu", name="fc6"),
        Dropout(0.5, name="drop7"), Dense(4096, "relu", name="fc7"),
        Dense(num_classes, "softmax", name="fc8"),
    ]
