"""Pretrained-weight readers by source; ``kerascnn.weights`` is the entry point (``--weights``).

* ``kerascnn.weights`` itself: ``keras.applications`` HDF5 files and Keras ``.weights.h5``;
* ``kerascnn.pretrained.torchvision``: torchvision (and timm ResNet) state_dicts as
  ``.safetensors`` (no PyTorch needed) or ``.pth``/``.pt`` (with PyTorch).
"""
