"""``keras.applications`` weight files (and Keras ``.weights.h5`` files) into
kerascnn models, matched by layer name.

kerascnn names its layers as ``keras.applications`` does (VGG ``block1_conv1`` ... ``fc1``,
``fc2``, ``predictions``; ResNet ``conv2_block1_1_conv``), and ``resnet50 -o variant=keras``
is ``keras.applications.ResNet50`` layer for layer, so the files Keras caches in
``~/.keras/models`` load as they are:

* legacy HDF5 (what ``keras.applications`` downloads): root attribute ``layer_names``, one
  group per layer whose attribute ``weight_names`` gives the order of its arrays;
* Keras 3 ``.weights.h5`` (``model.save_weights``): its groups are named after layer classes
  (``layers/conv2d_3``), not layer names, so it loads with Keras's own ``load_weights`` into
  the same kerascnn model (and option set) that wrote it.

Loading is strict: every backbone layer of the model gets its arrays from the file with the
same shapes, or one clear ``WeightsError`` says which layer differs. Only the top may be
missing or of another shape (a ``_notop`` file, or a head for other classes): those layers
keep their fresh initialisation and the ``LoadReport`` lists them. Reading needs ``h5py``
and numpy only; TensorFlow is touched only through the model given.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kerascnn.pretrained import LoadReport, WeightsError, weighted_layers

KERAS_APPS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclass(frozen=True)
class ImagenetSource:
    """The ``keras.applications`` ImageNet weights of one kerascnn model."""

    model: str
    url_dir: str        # under KERAS_APPS_URL
    top_file: str
    notop_file: str
    preprocessing: str = "caffe"   # keras.applications.{vgg16,vgg19,resnet}.preprocess_input
    options: tuple = ()            # ((key, value), ...) the kerascnn model needs


IMAGENET = {
    "vgg16": ImagenetSource("vgg16", "vgg16/", "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
                            "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "vgg19": ImagenetSource("vgg19", "vgg19/", "vgg19_weights_tf_dim_ordering_tf_kernels.h5",
                            "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "resnet50": ImagenetSource("resnet50", "resnet/", "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
                               "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                               options=(("variant", "keras"),)),
}


def keras_cache_dir() -> Path:
    """Where Keras caches downloads: ``$KERAS_HOME/models`` or ``~/.keras/models``."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def imagenet_file(model_name: str, options: dict | None = None, include_top: bool = True) -> Path:
    """The cached ``keras.applications`` file for ``model_name``; offline and missing, one line
    saying which file to place where. Never downloads."""
    src = IMAGENET.get(model_name)
    if src is None:
        from kerascnn.pretrained.torchvision import TORCHVISION_FILES, TORCHVISION_URL

        tv = TORCHVISION_FILES.get(model_name)
        hint = f"; torchvision's: --weights {tv} (from {TORCHVISION_URL}{tv})" if tv else ""
        raise WeightsError(f"no keras.applications ImageNet weights for {model_name}; --weights imagenet works "
                           f"for {', '.join(sorted(IMAGENET))}{hint}")
    options = options or {}
    for key, want in src.options:
        from kerascnn.models.resnet import is_keras_variant

        if key == "variant" and not is_keras_variant(options.get(key, "v1.5")):
            raise WeightsError(f"keras.applications' {model_name} weights need -o variant=keras")
    name = src.top_file if include_top else src.notop_file
    path = keras_cache_dir() / name
    if not path.is_file():
        raise WeightsError(f"ImageNet weights not found: place {name} (from {KERAS_APPS_URL}{src.url_dir}{name}) "
                           f"in {keras_cache_dir()}/")
    return path


# ------------------------------------------------------------------ reading

def _attr_list(group, name) -> list:
    """A list attribute as Keras writes it (large ones are split into name0, name1, ...)."""
    if name in group.attrs:
        values = list(group.attrs[name])
    else:
        values, i = [], 0
        while f"{name}{i}" in group.attrs:
            values.extend(group.attrs[f"{name}{i}"])
            i += 1
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def _read_legacy(group) -> dict:
    out = {}
    for layer in _attr_list(group, "layer_names"):
        g = group[layer]
        arrays = [g[w][()] for w in _attr_list(g, "weight_names")]
        if arrays:
            out[layer] = arrays
    return out


def read_weight_file(path):
    """``{layer name: [arrays in the layer's weight order]}`` from a legacy HDF5 weight file, or
    None for a Keras 3 ``.weights.h5`` (whose groups are named by object path, not layer name)."""
    import h5py

    from kerascnn.pretrained.limits import check_h5_sizes

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weight file not found: {path}")
    check_h5_sizes(path)        # declared dataset sizes against the file and the memory, before reading
    try:
        with h5py.File(path, "r") as f:
            if "layer_names" in f.attrs or "layer_names0" in f.attrs:
                return _read_legacy(f)
            if "model_weights" in f:            # a whole model saved with model.save("x.h5")
                return _read_legacy(f["model_weights"])
            if "layers" in f:
                return None  # Keras 3 .weights.h5: keyed by object path, not layer name
    except (OSError, KeyError) as e:
        raise WeightsError(f"cannot read weight file {path}: {e}") from None
    raise WeightsError(f"{path} is not a Keras weight file (no layer_names, model_weights or layers)")


def load_by_name(model, source, arrays: dict | None = None) -> LoadReport:
    """The keras.applications / Keras-file half of ``kerascnn.weights.load_into``."""
    arrays = read_weight_file(source) if arrays is None else arrays
    layers = weighted_layers(model)
    if arrays is None:
        try:
            model.load_weights(str(source))
        except (ValueError, KeyError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise WeightsError(f"{source} does not fit {model.name}: {first}") from None
        return LoadReport(loaded=[n for n, _ in layers])
    names = {n for n, _ in layers}
    extra = [n for n in arrays if n not in names]
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise WeightsError(f"{source}: layer {extra[0]!r}{more} is not in {model.name}; "
                           f"is it the weight file of another model or variant?")
    plan, report = [], LoadReport()
    last = max((i for i, (n, _) in enumerate(layers) if n in arrays), default=-1)
    if last < 0:
        raise WeightsError(f"{source}: no layer of {model.name} found in the file")
    for i, (name, layer) in enumerate(layers):
        want = [tuple(w.shape) for w in layer.weights]
        if name not in arrays:
            if i < last:
                raise WeightsError(f"{source} has no weights for {model.name}'s layer {name!r}")
            report.fresh.append(name)
            continue
        got = [tuple(a.shape) for a in arrays[name]]
        if got != want:
            if i == len(layers) - 1:  # the classifier, for other classes: a new head
                report.fresh.append(name)
                continue
            raise WeightsError(f"{source}: layer {name!r} has shapes {got}, {model.name} needs {want} "
                               f"(another input size or variant? a _notop file loads the backbone only)")
        plan.append((layer, arrays[name]))
        report.loaded.append(name)
    for layer, values in plan:
        layer.set_weights(values)
    return report
