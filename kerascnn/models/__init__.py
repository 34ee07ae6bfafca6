"""The model zoo: one file per family, one registered spec function per model.

Importing this package registers every model (it imports no TensorFlow).
"""
from kerascnn.models import alexnet, googlenet, lecture, lenet, nin, resnet, vgg  # noqa: F401
