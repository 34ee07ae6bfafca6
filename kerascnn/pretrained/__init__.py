"""Pretrained-weight readers by source; ``kerascnn.weights`` is the entry point (``--weights``).

* ``kerascnn.pretrained.keras_apps``: ``keras.applications`` HDF5 files and Keras ``.weights.h5``;
* ``kerascnn.pretrained.torchvision``: torchvision (and timm ResNet) state_dicts as
  ``.safetensors`` (no PyTorch needed) or ``.pth``/``.pt``/``.bin`` (with PyTorch).

What they share lives here: the error, the load report, the model's weighted layers.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from kerascnn.errors import KerasCNNError


class WeightsError(KerasCNNError):
    """A weight file that cannot be read or does not fit the model."""


@dataclass
class LoadReport:
    loaded: list = field(default_factory=list)      # layer names that got the file's arrays
    fresh: list = field(default_factory=list)       # top layers left as initialised (head / notop)
    ignored: list = field(default_factory=list)     # parts of the file not used by design (aux heads)

    def line(self, source) -> str:
        tail = f"; new (not from the file): {', '.join(self.fresh)}" if self.fresh else ""
        tail += f"; ignored: {', '.join(self.ignored)}" if self.ignored else ""
        return f"loaded {len(self.loaded)} layers from {source}{tail}"


def weighted_layers(model) -> list:
    """``[(name, layer)]`` of every layer with weights, in order, looking inside blocks."""
    out = []

    def walk(layers):
        for layer in layers:
            inner = getattr(layer, "inner_layers", None)
            if inner is not None:
                walk(inner)
            elif layer.weights:
                out.append((layer.name, layer))

    walk(model.layers)
    return out
