"""Pretrained weights: the ``--weights FILE|imagenet`` entry point.

Each source has its reader in ``kerascnn.pretrained``: ``keras_apps`` for the ``keras.applications``
HDF5 files (loaded by layer name; ``resnet50 -o variant=keras`` is ``keras.applications.ResNet50``
layer for layer) and Keras ``.weights.h5``, ``torchvision`` for torchvision/timm state_dicts
(``.safetensors``, ``.pth``, ``.pt``, ``.bin``). ``load_into`` dispatches on the file, ``pretrained``
also puts the weights' preprocessing in front of the model. Loading is strict everywhere: every
backbone weight gets the file's array of the same shape, or one ``WeightsError`` says what differs
and nothing is changed; only the top may start fresh, and the ``LoadReport`` lists it.
"""
from __future__ import annotations

from pathlib import Path

from kerascnn.pretrained import LoadReport, WeightsError, weighted_layers  # noqa: F401  (the public names)
from kerascnn.pretrained.keras_apps import (  # noqa: F401
    IMAGENET,
    KERAS_APPS_URL,
    ImagenetSource,
    imagenet_file,
    keras_cache_dir,
    read_weight_file,
)


def load_into(model, source, arrays: dict | None = None, options: dict | None = None,
              model_name: str | None = None) -> LoadReport:
    """Set ``model``'s weights from the file ``source`` (or ``arrays``, as ``read_weight_file``
    returns) by layer name. Only the model's top -- the layers after its last loaded one, and
    its final layer when the file's differs in shape (another number of classes) -- may stay
    fresh; anything else that does not fit raises one ``WeightsError`` and changes nothing.
    A torchvision/timm file (``.safetensors``/``.pth``/``.pt``) goes to
    ``kerascnn.pretrained.torchvision`` (``options``: the model's, to name a missing variant)."""
    from kerascnn.pretrained import keras_apps
    from kerascnn.pretrained import torchvision as TV

    if arrays is None and TV.is_torch_file(source):
        return TV.load_state_dict(model, source, TV.read_state_dict(source), model_name, options)
    return keras_apps.load_by_name(model, source, arrays)


# ------------------------------------------------------------------ the --weights option

def resolve(spec: str, model_name: str, options: dict | None, input_shape, num_classes: int):
    """``--weights FILE|imagenet`` -> (path, preprocessing or None). ``imagenet`` picks the cached
    file with the top when the model is 1000 classes at 224x224x3, else the ``_notop`` one (or,
    at 224x224x3, the full file when only that one is cached: its classifier is replaced). A
    file named like a keras.applications download gets that download's Caffe preprocessing."""
    if str(spec).lower() == "imagenet":
        at224 = tuple(input_shape) == (224, 224, 3)
        top = int(num_classes) == 1000 and at224
        try:
            return imagenet_file(model_name, options, include_top=top), IMAGENET[model_name].preprocessing
        except WeightsError:
            if top or not at224:
                raise
            try:  # other classes at 224: the full file serves too (its fc1/fc2 load, the classifier is new)
                return imagenet_file(model_name, options, include_top=True), IMAGENET[model_name].preprocessing
            except WeightsError:
                pass
            raise
    path = Path(spec)
    if not path.is_file():
        raise WeightsError(f"--weights {spec}: no such file (or use --weights imagenet)")
    return path, _file_preprocessing(path, model_name)


PREPROCESSING = ("caffe", "torch", "tf", "none")


def _file_preprocessing(path, model_name: str):
    """keras.applications' downloads: Caffe; torchvision/timm files: torchvision's mean/std, except
    GoogLeNet, whose ImageNet weights run ``transform_input`` after it: together (x - 0.5) / 0.5
    on [0, 1] pixels, the ``tf`` mode; anything else: None."""
    from kerascnn.pretrained import torchvision as TV

    if TV.is_torch_file(path):
        return "tf" if model_name == "googlenet" else "torch"
    known = {n: s.preprocessing for s in IMAGENET.values() for n in (s.top_file, s.notop_file)}
    return known.get(Path(path).name)


def default_preprocessing(spec: str, model_name: str) -> str:
    """The preprocessing that goes with ``--weights spec`` (no file is read): keras.applications'
    Caffe mode for ``imagenet`` and for files named like its downloads, torchvision's for
    ``.safetensors``/``.pth``/``.pt`` (``tf`` for GoogLeNet), else none."""
    if str(spec).lower() == "imagenet":
        return IMAGENET[model_name].preprocessing if model_name in IMAGENET else "none"
    return _file_preprocessing(spec, model_name) or "none"


def with_preprocessing(model, mode: str | None):
    """``model`` with an ``ImagenetPreprocess(mode)`` layer in front (the same layer objects)."""
    if not mode or mode == "none":
        return model
    if model.input_shape[-1] != 3:
        raise WeightsError(f"{mode} preprocessing is for RGB images; {model.name} takes "
                           f"{model.input_shape[-1]} channel(s) (use --preprocessing none)")
    import keras

    from kerascnn.layers import ImagenetPreprocess

    return keras.Sequential([keras.Input(shape=model.input_shape[1:], name="images"),
                             ImagenetPreprocess(mode, name="imagenet_preprocess"), *model.layers], name=model.name)


def pretrained(model, spec: str, model_name: str, options: dict | None, preprocessing: str | None = None):
    """Load ``--weights`` into ``model`` and put the weights' preprocessing in front of it.
    ``preprocessing``: ``caffe``, ``torch``, ``tf``, ``none``, or None for the source's own.
    Returns (model, report line, preprocessing used)."""
    path, default = resolve(spec, model_name, options, model.input_shape[1:], model.output_shape[-1])
    report = load_into(model, path, options=dict(options or {}), model_name=model_name)
    mode = default if preprocessing is None else (None if preprocessing == "none" else preprocessing)
    return with_preprocessing(model, mode), report.line(path), mode
