"""The model zoo: one file per family, one registered spec function per model, and the
keras.applications family (``keras_apps``), built by Keras's own constructors.

Importing this package registers every model (it imports no TensorFlow).
"""
from kerascnn.models import alexnet, googlenet, keras_apps, lecture, lenet, nin, resnet, vgg  # noqa: F401
