"""What the weight readers of ``kerascnn.pretrained`` share: the error, the load report, the
model's weighted layers, and where a model's head starts (``split``: what a ``_notop`` file lacks,
what fine-tuning trains first)."""
from __future__ import annotations

from dataclasses import dataclass, field

from kerascnn.errors import ConfigError, KerasCNNError


class WeightsError(KerasCNNError):
    """A weight file that cannot be read or does not fit the model."""


@dataclass
class LoadReport:
    loaded: list = field(default_factory=list)      # layer names that got the file's arrays
    fresh: list = field(default_factory=list)       # top layers left as initialised (head / notop)
    ignored: list = field(default_factory=list)     # parts of the file not used by design (aux heads)
    notes: list = field(default_factory=list)       # conversions beyond the layout's (EfficientNet's variance)

    def line(self, source) -> str:
        tail = f"; new (not from the file): {', '.join(self.fresh)}" if self.fresh else ""
        tail += f"; ignored: {', '.join(self.ignored)}" if self.ignored else ""
        tail += "".join(f"; {n}" for n in self.notes)
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


HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def sniff(path) -> str:
    """What a weight file is, from its first bytes (never its name): ``hdf5`` (Keras: keras.applications
    downloads, ``model.save("x.h5")``, ``.weights.h5``), ``safetensors``, ``torch`` (PyTorch's zip or
    legacy pickle ``torch.save``), ``keras-zip`` (a whole ``.keras`` model), or ``unknown``."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return "unknown"
    if head.startswith(HDF5_MAGIC):
        return "hdf5"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (100 << 20):
        return "safetensors"      # u64 little-endian header length, then the JSON header
    if head.startswith(b"PK\x03\x04"):
        import zipfile

        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()[:10_000]
        except (OSError, zipfile.BadZipFile):
            return "unknown"
        if "config.json" in names and any(n.endswith(".weights.h5") for n in names):
            return "keras-zip"
        return "torch"
    if head[:1] == b"\x80":       # a pickle (protocol 2+): torch.save's legacy format
        return "torch"
    return "unknown"


def split(model) -> tuple[list, list]:
    """(backbone layers, head layers) of a kerascnn model. The head starts at the *last* global pooling
    layer (a keras.applications model's squeeze-and-excitation blocks pool globally inside the
    backbone: MobileNetV3, EfficientNet), or, in a model without one, at its Flatten (VGG, AlexNet)."""
    import keras

    layers = list(model.layers)
    pools = (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)
    cut = next((i for i in reversed(range(len(layers))) if isinstance(layers[i], pools)), None)
    if cut is None:
        cut = next((i for i, layer in enumerate(layers) if isinstance(layer, keras.layers.Flatten)), None)
    if cut is None:
        raise ConfigError(f"{model.name} has no Flatten or global pooling layer: no head to fine-tune")
    return layers[:cut], layers[cut:]
