"""kerascnn: the convolutional-network lectures as working Keras 3 software.

Importing this package is cheap: TensorFlow and Keras are imported only by the
modules that build, train or export models.
"""
__version__ = "0.1.0"


def build(name: str, input_shape=None, num_classes=None, **options):
    """A registered model as a ``keras.Sequential``: ``kerascnn.build("vgg16", input_shape=(224, 224, 3))``."""
    from kerascnn.registry import build_model

    return build_model(name, input_shape, num_classes, **options)
