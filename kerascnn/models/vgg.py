"""VGG. Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015 (arXiv:1409.1556).

Configurations A, B, D, E of the paper's Table 1 (numbers are 3x3 conv channels, "M" a 2x2
max-pool); layer names follow ``keras.applications`` (block1_conv1 ... fc1, fc2, predictions).
``-o width=W`` scales every convolution's channels (``kerascnn.models.width``), ``-o hidden=N``
sets the two hidden dense layers (4096). The layers are torchvision's VGG too (its
``AdaptiveAvgPool2d((7, 7))`` is the identity at 224x224), so its checkpoints load
(``kerascnn.pretrained.torchvision``).
"""
from kerascnn.models.width import check_units, check_width, scaled
from kerascnn.models.base import Published, register_model
from kerascnn.specs import Activation, BatchNorm, Conv, Dense, Dropout, Flatten, Pool

VGG_CFGS = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def vgg_stack(cfg, num_classes, batch_norm=False, hidden=4096, width=1.0):
    """The VGG layer list: 3x3/pad-1 convolutions (+BN) and 2x2 pools, then three dense layers."""
    layers, block, conv = [], 1, 1
    cfg = [v if v == "M" else scaled(v, width) for v in cfg]
    for v in cfg:
        if v == "M":
            layers.append(Pool("max", 2, 2, name=f"block{block}_pool"))
            block, conv = block + 1, 1
            continue
        name = f"block{block}_conv{conv}"
        if batch_norm:
            layers += [Conv(v, 3, padding=1, name=name), BatchNorm(name=f"{name}_bn"),
                       Activation("relu", name=f"{name}_relu")]
        else:
            layers.append(Conv(v, 3, padding=1, activation="relu", name=name))
        conv += 1
    return layers + [
        Flatten(name="flatten"),
        Dense(hidden, "relu", name="fc1"), Dropout(0.5, name="drop1"),
        Dense(hidden, "relu", name="fc2"), Dropout(0.5, name="drop2"),
        Dense(num_classes, "softmax", name="predictions"),
    ]


TORCHVISION = "torchvision model docs (weights tables: params, GFLOPS = multiply-adds)"


def _register(name, cfg, batch_norm, doc, published=()):
    def spec_fn(input_shape, num_classes, width=1.0, hidden=4096):
        return vgg_stack(VGG_CFGS[cfg], num_classes, batch_norm, check_units(hidden, "hidden", name),
                         check_width(width, name))

    spec_fn.__name__ = spec_fn.__qualname__ = name
    spec_fn.__doc__ = doc
    return register_model(family="vgg", paper="Simonyan & Zisserman, ICLR 2015", year=2014,
                          default_input=(224, 224, 3), published=published)(spec_fn)


def _tv(trainable, gmacs, keras_params=None):
    out = [Published(TORCHVISION, trainable_params=trainable, macs=int(round(gmacs * 1e9)))]
    if keras_params:
        out.append(Published("keras.applications VGG16/VGG19(weights=None).count_params() (the docs' table rounds it)",
                             params=keras_params))
    return tuple(out)


vgg11 = _register("vgg11", "A", False, 'VGG-11 (configuration "A"): 8 conv + 3 dense layers.',
                  _tv(132_863_336, 7.61))
vgg13 = _register("vgg13", "B", False, 'VGG-13 (configuration "B"): 10 conv + 3 dense layers.',
                  _tv(133_047_848, 11.31))
vgg16 = _register("vgg16", "D", False,
                  'VGG-16 (configuration "D"): 13 conv + 3 dense layers, 138,357,544 params at 224x224x3.',
                  _tv(138_357_544, 15.47, keras_params=138_357_544))
vgg19 = _register("vgg19", "E", False, 'VGG-19 (configuration "E"): 16 conv + 3 dense layers.',
                  _tv(143_667_240, 19.63, keras_params=143_667_240))
vgg11_bn = _register("vgg11_bn", "A", True, "VGG-11 with BatchNorm after every convolution.",
                     _tv(132_868_840, 7.61))
vgg13_bn = _register("vgg13_bn", "B", True, "VGG-13 with BatchNorm after every convolution.",
                     _tv(133_053_736, 11.31))
vgg16_bn = _register("vgg16_bn", "D", True, "VGG-16 with BatchNorm after every convolution.",
                     _tv(138_365_992, 15.47))
vgg19_bn = _register("vgg19_bn", "E", True, "VGG-19 with BatchNorm after every convolution.",
                     _tv(143_678_248, 19.63))
