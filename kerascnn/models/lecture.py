"""The lectures' own stacks: the "why not an MLP" baseline and the Keras MNIST convnet."""
from kerascnn.models.base import Published, register_model
from kerascnn.specs import Conv, Dense, Flatten, Pool


@register_model(family="lecture", paper="Lecture: why not an MLP for images", year=2024,
                default_input=(150, 150, 3), num_classes=6,
                published=(Published("lecture 000's MLP counted by hand: 67,500*128 + 128 + 128*6 + 6",
                                     params=8_640_902),))
def mlp(input_shape, num_classes, hidden=128):
    """Flatten -> Dense(128, relu) -> Dense(classes, softmax): 8,640,902 params at 150x150x3, 6 classes.

    Every pixel connects to every hidden unit: the parameter count grows with the image area,
    which is the lecture's argument for convolutions.
    """
    return [Flatten(), Dense(hidden, "relu"), Dense(num_classes, "softmax")]


@register_model(family="lecture", paper="Lecture: CNN with Keras (MNIST)", year=2024,
                default_input=(28, 28, 1), num_classes=10,
                published=(Published("lecture 002: Keras model.summary(), Total params: 123,690",
                                     params=123_690),))
def convnet(input_shape, num_classes):
    """Conv2D(32,3)-MaxPool-Conv2D(64,3)-MaxPool-Flatten-Dense(64)-Dense(32)-Dense(10): 123,690 params.

    The Conv2D/MaxPooling2D/Flatten/Dense stack whose ``model.summary()`` the Keras lecture shows;
    layers keep Keras's automatic names (conv2d, conv2d_1, ...) so the summary reads the same.
    """
    return [
        Conv(32, 3, activation="relu"), Pool("max", 2),
        Conv(64, 3, activation="relu"), Pool("max", 2),
        Flatten(), Dense(64, "relu"), Dense(32, "relu"), Dense(num_classes, "softmax"),
    ]
