"""LeNet-5. LeCun, Bottou, Bengio & Haffner, "Gradient-based learning applied to document
recognition", Proc. IEEE 86(11), 1998."""
from kerascnn.errors import ConfigError
from kerascnn.models.base import Published, register_model
from kerascnn.specs import BatchNorm, Conv, Dense, Flatten, Pool


@register_model(family="lenet", paper="LeCun et al., Proc. IEEE 1998", year=1998,
                default_input=(28, 28, 1), num_classes=10, published=(
                    Published("Dive into Deep Learning 7.6 (LeNet on 28x28 Fashion-MNIST, padded C1)",
                              params=61_706),
                    Published("LeCun et al. 1998 layer sizes at 32x32 (dense F6 and output)",
                              params=61_706, input_shape=(32, 32, 1)),
                ))
def lenet5(input_shape, num_classes, variant="classic", activation="", batch_norm=False):
    """LeNet-5 as taught: C1 6@5x5, S2 avg-pool, C3 16@5x5, S4, F5 120, F6 84, output: 61,706 params.

    ``variant="classic"``: sigmoid (or ``activation=tanh``) and average pooling, as in the paper
    and Dive into Deep Learning. ``variant="modern"``: ReLU and max-pooling, with optional
    BatchNorm after each convolution (``batch_norm=true``). On inputs smaller than 32x32 the
    first convolution pads by 2, so 28x28 MNIST gives the paper's 28x28x6 C1 maps.
    """
    if variant not in ("classic", "modern"):
        raise ConfigError(f"lenet5 variant must be classic or modern; received {variant!r}")
    act = activation or ("sigmoid" if variant == "classic" else "relu")
    if act not in ("sigmoid", "tanh", "relu", "elu", "gelu", "swish"):
        raise ConfigError(f"lenet5 activation must be sigmoid, tanh or relu; received {act!r}")
    pool = "avg" if variant == "classic" else "max"
    pad = 2 if min(input_shape[:2]) < 32 else 0
    bn = batch_norm and variant == "modern"

    def conv(filters, padding, name):
        if bn:
            return [Conv(filters, 5, padding=padding, name=name, use_bias=False), BatchNorm(name=f"{name}_bn"),
                    _act(act, f"{name}_act")]
        return [Conv(filters, 5, padding=padding, activation=act, name=name)]

    return [
        *conv(6, pad, "c1"), Pool(pool, 2, name="s2"),
        *conv(16, 0, "c3"), Pool(pool, 2, name="s4"),
        Flatten(name="flatten"),
        Dense(120, act, name="f5"), Dense(84, act, name="f6"),
        Dense(num_classes, "softmax", name="output"),
    ]


def _act(fn, name):
    from kerascnn.specs import Activation
    return Activation(fn, name=name)
