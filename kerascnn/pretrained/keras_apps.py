"""Keras weight files into kerascnn models: ``keras.applications`` downloads, ``model.save("x.h5")``
files and Keras 3 ``.weights.h5``.

Which loader, by model:

* kerascnn's spec models name their layers as ``keras.applications`` does (VGG ``block1_conv1`` ...
  ``fc1``, ``fc2``, ``predictions``; ``resnet50 -o variant=keras`` is ``keras.applications.ResNet50``
  layer for layer), so a file loads **by layer name** (``load_by_name``);
* the keras.applications family (``kerascnn.models.keras_apps``) is built by Keras's own
  constructor, whose auto-named layers (``conv2d_17``, ``normalization_1``) depend on what the
  process built before: a file loads **by order** of the weighted layers, as Keras itself loads
  these files (``load_by_order``), the names checked up to the auto-name suffix.

Formats: legacy HDF5 (what ``keras.applications`` downloads: root attribute ``layer_names``, one
group per layer whose ``weight_names`` give the order of its arrays; ``model.save("x.h5")`` has
the same under ``model_weights``); Keras 3 ``.weights.h5`` (``model.save_weights``), whose groups
are named after layer *classes* (``layers/conv2d_3``): loaded with Keras's own ``load_weights``
into the model itself when the structure is the same, else into the keras.applications model of
the same architecture (``counterpart``) built to the file's structure, whose layers then go by
name or order as above.

Loading is strict: every backbone layer gets the file's arrays with the same shapes, or one
``WeightsError`` says which layer differs and nothing is changed. Only the top may be missing or
of another shape (a ``_notop`` file, a head for other classes): those layers keep their fresh
initialisation and the ``LoadReport`` lists them. ``imagenet_file`` finds the cached download
(``~/.keras/models``), never downloading. Reading needs ``h5py`` and numpy; TensorFlow is touched
only through the model given (and, for ``.weights.h5`` and ``--weights imagenet`` of the
keras.applications family, Keras's own constructor).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from kerascnn.errors import first_line
from kerascnn.pretrained.base import LoadReport, WeightsError, weighted_layers

KERAS_APPS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclass(frozen=True)
class ImagenetSource:
    """The ``keras.applications`` ImageNet weights of one kerascnn spec model."""

    model: str
    url_dir: str        # under KERAS_APPS_URL
    top_file: str
    notop_file: str
    preprocessing: str = "caffe"   # keras.applications.{vgg16,vgg19,resnet}.preprocess_input
    options: tuple = ()            # ((key, value), ...) the kerascnn model needs
    constructor: str = ""          # keras.applications.<constructor>: the same layers


IMAGENET = {
    "vgg16": ImagenetSource("vgg16", "vgg16/", "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
                            "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", constructor="VGG16"),
    "vgg19": ImagenetSource("vgg19", "vgg19/", "vgg19_weights_tf_dim_ordering_tf_kernels.h5",
                            "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5", constructor="VGG19"),
    "resnet50": ImagenetSource("resnet50", "resnet/", "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
                               "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                               options=(("variant", "keras"),), constructor="ResNet50"),
}


def keras_cache_dir() -> Path:
    """Where Keras caches downloads: ``$KERAS_HOME/models`` or ``~/.keras/models``."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def keras_app(model_name: str):
    """The ``KerasApp`` record of a keras.applications-family model, or None."""
    from kerascnn.registry import get_entry, is_model

    return get_entry(model_name).extra if is_model(model_name) and get_entry(model_name).kind == "keras" else None


def counterpart(model_name: str, options: dict | None = None):
    """The ``keras.applications`` constructor whose layers ``model_name`` (with ``options``) has, or None:
    the family's own; VGG16/VGG19 for vgg16/vgg19; ResNet50 for ``resnet50 -o variant=keras``."""
    app = keras_app(model_name)
    if app is not None:
        return app.constructor
    src = IMAGENET.get(model_name)
    if src is None:
        return None
    from kerascnn.registry import get_entry

    options, defaults, needed = dict(options or {}), get_entry(model_name).options, dict(src.options)
    for key, default in defaults.items():
        value = options.get(key, default)
        if key == "variant" and key in needed:
            from kerascnn.models.resnet import is_keras_variant

            if not is_keras_variant(value):
                return None
        elif value != default:      # -o width=0.5, small_input=true ...: another model than keras.applications'
            return None
    return src.constructor


def preprocessing_of(model_name: str) -> str:
    """The ``preprocess_input`` mode of the keras.applications model ``model_name`` is."""
    app = keras_app(model_name)
    return app.preprocessing if app is not None else IMAGENET[model_name].preprocessing


def imagenet_file(model_name: str, options: dict | None = None, include_top: bool = True,
                  input_shape=(224, 224, 3)) -> Path:
    """The cached ``keras.applications`` file for ``model_name``; offline and missing, one line
    saying which file to place where. Never downloads."""
    app = keras_app(model_name)
    if app is not None:
        name, origin = _keras_app_file(app, include_top, input_shape)
    else:
        src = IMAGENET.get(model_name)
        if src is None:
            from kerascnn.pretrained.torchvision import TORCHVISION_FILES, TORCHVISION_URL

            tv = TORCHVISION_FILES.get(model_name)
            hint = f"; torchvision's: --weights {tv} (from {TORCHVISION_URL}{tv})" if tv else ""
            raise WeightsError(f"no keras.applications ImageNet weights for {model_name}; --weights imagenet works "
                               f"for {', '.join(sorted(IMAGENET))} and the keras.applications family (`kerascnn "
                               f"list keras`){hint}")
        if counterpart(model_name, options) is None:
            need = " ".join(f"-o {k}={v}" for k, v in src.options)
            raise WeightsError(f"keras.applications' {model_name} weights fit {model_name} as keras.applications "
                               f"builds it: " + (f"{need}, no other -o option" if need else "no -o option"))
        name = src.top_file if include_top else src.notop_file
        origin = f"{KERAS_APPS_URL}{src.url_dir}{name}"
    path = keras_cache_dir() / name
    if not path.is_file():
        raise WeightsError(f"ImageNet weights not found: place {name} (from {origin}) in {keras_cache_dir()}/")
    return path


class _FileWanted(Exception):
    pass


def _keras_app_file(app, include_top: bool, input_shape) -> tuple:
    """(file name, URL) of the ImageNet weights Keras's own constructor would load for this model:
    the constructor runs with ``weights="imagenet"`` and ``get_file`` replaced by a function that
    records the name and stops it (Keras decides the name: MobileNet's depends on the input size)."""
    from unittest import mock

    import keras
    from keras.src.utils import file_utils

    seen = {}

    def wanted(fname=None, origin=None, *args, **kwargs):
        seen.update(fname=fname, origin=origin)
        raise _FileWanted

    shape = tuple(input_shape) if not include_top else (app.size, app.size, 3)
    with mock.patch.object(file_utils, "get_file", wanted):
        try:
            getattr(keras.applications, app.constructor)(weights="imagenet", include_top=include_top,
                                                         input_shape=shape)
        except _FileWanted:
            pass
        except ValueError as e:
            raise WeightsError(f"keras.applications.{app.constructor} has no ImageNet weights for this input: "
                               f"{first_line(e, 300)}") from None
    if not seen.get("fname"):
        raise WeightsError(f"keras.applications.{app.constructor} named no ImageNet weight file")
    return Path(seen["fname"]).name, seen["origin"]


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
    """``{layer name: [arrays in the layer's weight order]}`` (in the file's layer order) from a legacy
    HDF5 weight file or a ``model.save("x.h5")`` file, or None for a Keras 3 ``.weights.h5``."""
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


def keras3_structure(path) -> dict:
    """``{object path: [array shapes]}`` of a Keras 3 ``.weights.h5`` (``layers/conv2d_3``: ...),
    every group with variables; the layout Keras's ``load_weights`` matches against a model."""
    import h5py

    out = {}
    try:
        with h5py.File(path, "r") as f:
            def visit(name, obj):
                if isinstance(obj, h5py.Group) and name.endswith("vars") and len(obj):
                    keys = sorted(obj, key=lambda k: int(k) if k.isdigit() else 0)
                    out[name[:-len("/vars")] if "/" in name else ""] = [tuple(obj[k].shape) for k in keys]
            f.visititems(visit)
    except OSError as e:
        raise WeightsError(f"cannot read weight file {path}: {e}") from None
    return out


def _model_structure(model) -> dict:
    """The ``keras3_structure`` Keras writes for ``model`` (saved to a temporary file and read back)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="kerascnn-structure-") as d:
        path = Path(d) / "m.weights.h5"
        model.save_weights(path)
        return keras3_structure(path)


# ------------------------------------------------------------------ loading

def load(model, source, model_name: str, options: dict | None = None, arrays: dict | None = None) -> LoadReport:
    """A Keras weight file (or ``arrays`` as ``read_weight_file`` gives) into ``model``: by order for
    the keras.applications family, by name for kerascnn's spec models."""
    arrays = read_weight_file(source) if arrays is None else arrays
    if arrays is None:
        return load_keras3(model, source, model_name, options)
    app = keras_app(model_name)
    if app is not None:
        return load_by_order(model, source, arrays, app)
    return load_by_name(model, source, arrays)


def load_by_name(model, source, arrays: dict) -> LoadReport:
    """Legacy-HDF5 arrays into a kerascnn spec model, matched by layer name."""
    layers = weighted_layers(model)
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


_AUTO = re.compile(r"_\d+$")


def _base(name: str) -> str:
    """A layer name without Keras's auto-name counter (``conv2d_17`` -> ``conv2d``)."""
    return _AUTO.sub("", name)


def load_by_order(model, source, arrays: dict, app) -> LoadReport:
    """Arrays (in the file's layer order) into a keras.applications-family model, by the order of its
    weighted layers (Keras's own rule for these files). The head -- the layers from the last global
    pooling on -- may be absent from the file (``_notop``) or of other shapes (other classes):
    from its first difference on it stays fresh; a difference in the backbone is one error."""
    layers = weighted_layers(model)
    items = list(arrays.items())
    head = _head_names(model)
    if len(items) > len(layers):
        raise WeightsError(f"{source} has {len(items)} weighted layers, {model.name} ({app.source}) has "
                           f"{len(layers)}: the weights of another architecture (or input size)")
    plan, report = [], LoadReport()
    fresh_from = None
    for i, (name, layer) in enumerate(layers):
        if fresh_from is None and i < len(items):
            fname, values = items[i]
            got, want = [tuple(a.shape) for a in values], [tuple(w.shape) for w in layer.weights]
            same_name = _base(fname) == _base(name)
            if same_name and got == want:
                plan.append((layer, values))
                report.loaded.append(name)
                continue
            if name not in head:
                what = (f"has layer {fname!r} where {model.name} has {name!r}" if not same_name else
                        f"layer {fname!r} has shapes {got}, {model.name}'s {name!r} needs {want}")
                raise WeightsError(f"{source}: {what} (the weights of another architecture or input size?)")
            fresh_from = i
        elif fresh_from is None:
            if name not in head:
                raise WeightsError(f"{source} ends before {model.name}'s layer {name!r}: a file of another "
                                   f"architecture (only the head may be missing)")
            fresh_from = i
        report.fresh.append(name)
    if not plan:
        raise WeightsError(f"{source}: no layer of {model.name} found in the file")
    _imagenet_efficientnet_variance(plan, app, report)
    for layer, values in plan:
        layer.set_weights(values)
    return report


def _head_names(model) -> set:
    """Names of the head's layers: the fine-tuning head (``kerascnn.pretrained.base.split``)."""
    from kerascnn.pretrained.base import split

    return {layer.name for layer in split(model)[1]}


IMAGENET_STDDEV_RGB = (0.229, 0.224, 0.225)


def _imagenet_efficientnet_variance(plan, app, report) -> None:
    """keras.applications' ImageNet EfficientNet (B0-B7) files store the ImageNet *standard deviations*
    as the Normalization layer's variance; Keras builds the model for them with an extra
    ``Rescaling(1/sqrt(std))`` (tensorflow#49930), together (x - mean)/std. A file whose variance is
    exactly those three numbers gets the same function here by setting the variance to std**2."""
    import numpy as np

    if app.module != "efficientnet":
        return
    for i, (layer, values) in enumerate(plan):
        if type(layer).__name__ == "Normalization" and len(values) >= 2:
            var = np.asarray(values[1], np.float64).reshape(-1)
            if var.shape == (3,) and np.allclose(var, IMAGENET_STDDEV_RGB, rtol=0, atol=1e-6):
                values = list(values)
                values[1] = (np.asarray(values[1], np.float64) ** 2).astype(np.asarray(values[1]).dtype)
                plan[i] = (layer, values)
                report.notes.append(f"{layer.name}: variance = std**2 (keras.applications' ImageNet "
                                    f"EfficientNet stores std; Keras adds 1/sqrt(std), tensorflow#49930)")
            return


def load_keras3(model, source, model_name: str, options: dict | None = None) -> LoadReport:
    """A Keras 3 ``.weights.h5``: Keras's own ``load_weights`` into the model when the file has its
    structure; else into the keras.applications model of the same architecture built to the file's
    structure (with or without its top, the file's classes), whose layers then load as a legacy file."""
    file = keras3_structure(source)
    mine = _model_structure(model)
    if file == mine:
        try:
            model.load_weights(str(source))
        except (ValueError, KeyError) as e:
            raise WeightsError(f"{source} does not fit {model.name}: {_keras_load_error(e)}") from None
        return LoadReport(loaded=[n for n, _ in weighted_layers(model)])
    ctor = counterpart(model_name, options)
    if ctor is None:
        raise WeightsError(f"{source} does not fit {model.name}: {_difference(file, mine)} (a Keras 3 .weights.h5 "
                           f"loads into the model and options it was saved from)")
    ref = _reference(ctor, file, tuple(model.input_shape[1:]), source)
    arrays = {layer.name: layer.get_weights() for layer in ref.layers if layer.weights}
    app = keras_app(model_name)
    return load_by_order(model, source, arrays, app) if app is not None else load_by_name(model, source, arrays)


def _reference(ctor: str, file: dict, input_shape, source):
    """``keras.applications.<ctor>`` (no weights) with exactly the file's structure, the file loaded
    into it by Keras; one line when no top or class count fits."""
    import keras

    build = getattr(keras.applications, ctor)
    notop = build(weights=None, include_top=False, input_shape=input_shape)
    tried = [_model_structure(notop)]
    candidates = [notop]
    if file != tried[0]:
        extra = [k for k in file if k not in tried[0]]
        classes = sorted({shapes[0][-1] for k in extra for shapes in [file[k]] if shapes}, reverse=True)
        candidates = []
        for k in classes:
            try:
                ref = build(weights=None, include_top=True, classes=int(k), input_shape=input_shape)
            except ValueError:
                continue
            s = _model_structure(ref)
            if s == file:
                candidates = [ref]
                break
            tried.append(s)
    if not candidates:
        raise WeightsError(f"{source} is not the weights of keras.applications.{ctor} at "
                           f"{'x'.join(map(str, input_shape))}: {_difference(file, tried[-1])}")
    ref = candidates[0]
    try:
        ref.load_weights(str(source))
    except (ValueError, KeyError) as e:
        raise WeightsError(f"{source} does not fit keras.applications.{ctor}: {_keras_load_error(e)}") from None
    return ref


def _difference(file: dict, model: dict) -> str:
    """The first difference between two ``keras3_structure`` dicts, in words."""
    for key, shapes in model.items():
        if key not in file:
            return f"the file has no {key} (the model's {shapes})"
        if file[key] != shapes:
            return f"the file's {key} has shapes {file[key]}, the model's {shapes}"
    extra = [k for k in file if k not in model]
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        return f"the file's {extra[0]} is not in the model{more}"
    return "the structures differ"


def _keras_load_error(e) -> str:
    """Keras's 'A total of N objects could not be loaded. Example error message for object <X>:\\n\\n<why>'
    as one line: 'N objects could not be loaded, e.g. <X>: <why>'."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()
    m = re.match(r"A total of (\d+) objects could not be loaded\. Example error message for object (<[^>]*>):\s*"
                 r"(.*?)(?:\n\s*\n|$)", text, re.S)
    if m:
        return f"{m.group(1)} object(s) could not be loaded, e.g. {m.group(2)}: {' '.join(m.group(3).split())[:300]}"
    return first_line(e, 300)


def file_classes(arrays: dict | None, model_name: str, options: dict | None = None):
    """The number of classes of the classifier a Keras file holds for ``model_name``, or None (no head)."""
    if not arrays:
        return None
    from kerascnn.registry import get_entry

    entry = get_entry(model_name)
    if entry.kind == "keras":   # the keras.applications family: the file's last layer is the classifier
        name, values = list(arrays.items())[-1]
        top = _base(name)
        if values and (top.lower() in ("predictions", "logits", "conv_preds") or top.endswith("_head_dense")):
            return int(values[0].shape[-1])
        return None
    last = entry.specs(None, None, **(options or {}))[-1].name
    if last in arrays and arrays[last]:
        return int(arrays[last][0].shape[-1])
    return None


def keras3_classes(path, model_name: str):
    """The classes of the classifier in a Keras 3 ``.weights.h5`` (its last ``dense``; for the MobileNets,
    whose classifier is a 1x1 convolution, the last ``conv2d``), or None."""
    structure = keras3_structure(path)

    def last(kind):
        found = [(int(m.group(1) or 0), shapes) for key, shapes in structure.items()
                 for m in [re.fullmatch(rf"layers/{kind}(?:_(\d+))?", key)] if m and shapes]
        return max(found)[1][0][-1] if found else None

    k = last("dense")
    app = keras_app(model_name)
    if k is None and app is not None and app.constructor.startswith("MobileNet"):
        k = last("conv2d")
    return int(k) if k is not None else None
