"""kerascnn: the convolutional-network lectures as working Keras 3 software.

Importing this package is cheap: TensorFlow and Keras are imported only by the
modules that build, train or export models.
"""
__version__ = "0.1.0"
