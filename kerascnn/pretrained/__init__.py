"""Pretrained weights: the ``--weights FILE|imagenet`` entry point, and the readers by source.

* ``keras_apps``: Keras weight files (keras.applications downloads, ``model.save("x.h5")``,
  Keras 3 ``.weights.h5``) into kerascnn's spec models (by layer name) and the keras.applications
  family (by order, as Keras loads them);
* ``torchvision``: torchvision (and timm ResNet) state_dicts, ``.safetensors`` (no PyTorch needed)
  or ``.pth``/``.pt``/``.bin`` (with PyTorch);
* ``transforms``: the source's evaluation transform (resize, crop; PIL, outside the model) and the
  normalisation (a layer inside it): ``Preprocessing``;
* ``base``: what they share (``WeightsError``, ``LoadReport``, ``weighted_layers``, ``sniff``).

What a file is comes from its bytes (``base.sniff``), never its name; which preprocessing goes
with it from the file's contents and the model (``WeightsFile.preprocessing``), and every command
says which it used. Loading is strict everywhere: every backbone weight gets the file's array of
the same shape, or one ``WeightsError`` says what differs and nothing is changed; only the top may
start fresh, and the ``LoadReport`` lists it. ``predict``/``evaluate``/``export`` build the model
with the file's own classes and refuse a model whose classifier would be new
(``build_pretrained``); ``train`` may start a new head (seeded by the run's ``--seed``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from kerascnn.pretrained.base import LoadReport, WeightsError, sniff, weighted_layers  # noqa: F401
from kerascnn.pretrained.keras_apps import (  # noqa: F401
    IMAGENET,
    KERAS_APPS_URL,
    ImagenetSource,
    imagenet_file,
    keras_cache_dir,
    read_weight_file,
)
from kerascnn.pretrained.transforms import EvalTransform, Preprocessing  # noqa: F401

PREPROCESSING = ("caffe", "torch", "tf", "raw", "none")


@dataclass
class WeightsFile:
    """``--weights FILE|imagenet`` resolved and read once."""

    path: Path
    format: str                    # hdf5 | safetensors | torch
    arrays: Optional[dict] = None  # a state_dict, or Keras legacy arrays by layer name; None: Keras 3 file
    layout: Optional[str] = None   # the torchvision family of a state_dict
    imagenet: bool = False         # --weights imagenet (keras.applications' cached download)

    @property
    def is_torch(self) -> bool:
        return self.format in ("safetensors", "torch")

    def classes(self, model_name: str, options: dict | None = None) -> Optional[int]:
        """The classes of the file's classifier for ``model_name``, or None (a file without one)."""
        from kerascnn.pretrained import keras_apps
        from kerascnn.pretrained import torchvision as TV

        if self.is_torch:
            return TV.file_classes(self.arrays, self.layout)
        if self.arrays is None:
            return keras_apps.keras3_classes(self.path, model_name)
        return keras_apps.file_classes(self.arrays, model_name, options)

    def load(self, model, model_name: str, options: dict | None = None) -> LoadReport:
        """The file's weights into ``model`` (strict; only the top may stay fresh)."""
        from kerascnn.pretrained import keras_apps
        from kerascnn.pretrained import torchvision as TV

        if self.is_torch:
            return TV.load_state_dict(model, self.path, self.arrays, model_name, options)
        return keras_apps.load(model, self.path, model_name, options, self.arrays)

    def preprocessing(self, model_name: str, options: dict | None, input_shape) -> Preprocessing:
        """What goes with these weights, decided from the file's contents and the model."""
        return decide(self, model_name, options, input_shape)


def open_weights(spec: str, model_name: str, options: dict | None = None, input_shape=(224, 224, 3),
                 num_classes: int = 1000) -> WeightsFile:
    """``--weights FILE|imagenet`` -> a read ``WeightsFile``. ``imagenet`` picks the cached
    keras.applications file with the top when the model is 1000 classes at its natural input, else
    the ``_notop`` one (or, at 224x224x3, the full file when only that one is cached)."""
    if str(spec).lower() == "imagenet":
        path = imagenet_path(model_name, options, input_shape, num_classes)
        return WeightsFile(path, "hdf5", read_weight_file(path), imagenet=True)
    path = Path(spec)
    if not path.is_file():
        raise WeightsError(f"--weights {spec}: no such file (or use --weights imagenet)")
    kind = sniff(path)
    from kerascnn.pretrained import torchvision as TV

    if kind == "hdf5":
        return WeightsFile(path, kind, read_weight_file(path))
    if kind in ("safetensors", "torch") or TV.is_torch_file(path):
        sd = TV.read_state_dict(path)
        return WeightsFile(path, kind, sd, TV.layout_of(sd, path))
    if kind == "keras-zip":
        raise WeightsError(f"{path} is a whole Keras model (.keras): use it as the MODEL argument "
                           f"(kerascnn predict {path} ...), not --weights")
    raise WeightsError(f"{path} is not a weight file kerascnn reads: a Keras HDF5 file (.h5, .weights.h5), "
                       f"a .safetensors or a PyTorch .pth state_dict")


def imagenet_path(model_name, options, input_shape, num_classes) -> Path:
    """The cached keras.applications file ``--weights imagenet`` means for this model, input and classes."""
    from kerascnn.registry import get_entry

    natural = tuple(get_entry(model_name).cfg.natural_input(options))
    at_natural = tuple(input_shape) == natural
    top = int(num_classes) == 1000 and at_natural
    try:
        return imagenet_file(model_name, options, include_top=top, input_shape=input_shape)
    except WeightsError:
        if top or not at_natural:
            raise
        try:  # other classes at the natural input: the full file serves too (its classifier is replaced)
            return imagenet_file(model_name, options, include_top=True, input_shape=input_shape)
        except WeightsError:
            pass
        raise


def load_into(model, source, arrays: dict | None = None, options: dict | None = None,
              model_name: str | None = None) -> LoadReport:
    """Set ``model``'s weights from the file ``source`` (or ``arrays``, as ``read_weight_file``
    returns). Only the model's top may stay fresh; anything else that does not fit raises one
    ``WeightsError`` and changes nothing."""
    name = model_name or model.name
    if arrays is not None:
        from kerascnn.pretrained import keras_apps

        return keras_apps.load(model, source, name, options, arrays)
    return open_weights(str(source), name, options).load(model, name, options)


# ------------------------------------------------------------------ preprocessing

def decide(wf: WeightsFile, model_name: str, options: dict | None, input_shape) -> Preprocessing:
    """The source's preprocessing for ``wf`` and the model (``kerascnn.pretrained.transforms``)."""
    from kerascnn.pretrained import keras_apps
    from kerascnn.pretrained import transforms as T

    size = tuple(input_shape)[:2]
    if not wf.is_torch:
        ctor = keras_apps.counterpart(model_name, options)
        if ctor is None:
            return Preprocessing(None, None, "kerascnn", f"a Keras weight file, and {model_name} is kerascnn's own "
                                 f"model: the [0, 1] pixels it trains on")
        why = ("keras.applications' ImageNet download" if wf.imagenet else
               f"a Keras weight file, and {model_name} is keras.applications.{ctor} layer for layer")
        return Preprocessing(keras_apps.preprocessing_of(model_name), T.keras_applications(size),
                             "keras.applications", why)
    from kerascnn.pretrained import torchvision as TV

    cfg = TV.timm_config(wf.path)
    if cfg is not None:
        mean, std = tuple(cfg.get("mean") or T.IMAGENET_MEAN), tuple(cfg.get("std") or T.IMAGENET_STD)
        if str(cfg.get("crop_mode") or "center") not in ("center", "squash"):
            raise WeightsError(f"{wf.path}: timm's crop_mode {cfg.get('crop_mode')!r} (config.json) is not one "
                               f"kerascnn reproduces (center, squash)")
        t = T.timm(size, cfg)
        why = (f"a {wf.layout} state_dict with timm's pretrained_cfg in {wf.path.parent / 'config.json'}: "
               f"crop_pct {cfg.get('crop_pct', T.TIMM_DEFAULT_CROP_PCT)}, {t.interpolation}")
        return Preprocessing("torch", t, "timm", why, tuple(float(v) for v in mean), tuple(float(v) for v in std))
    resize = TV.known_resize(wf.path) if wf.layout == "resnet" else None
    why = f"a torchvision {wf.layout} state_dict"
    if resize:
        why += f" (recognised by its SHA-256: ResNet-50 IMAGENET1K_V2, resize {resize})"
    mode = "torch"
    if model_name == "googlenet":
        mode, why = "tf", why + "; GoogLeNet's ImageNet weights add transform_input: with the mean/std, (x-0.5)/0.5"
    return Preprocessing(mode, T.torchvision(size, resize), "torchvision", why)


def default_preprocessing(spec: str, model_name: str, options: dict | None = None) -> str:
    """The normalisation mode that goes with ``--weights spec`` for ``model_name``, from the file's first
    bytes and the model (no arrays read; TensorFlow-free): keras.applications' mode for ``imagenet``
    and for Keras files into a model with keras.applications' layers, torchvision's for state_dicts
    (``tf`` for GoogLeNet), else none."""
    from kerascnn.pretrained import keras_apps

    if str(spec).lower() == "imagenet":
        try:
            return keras_apps.preprocessing_of(model_name)
        except KeyError:
            return "none"
    from kerascnn.pretrained import torchvision as TV

    if TV.is_torch_file(spec):
        return "tf" if model_name == "googlenet" else "torch"
    if sniff(spec) == "hdf5" and keras_apps.counterpart(model_name, options):
        return keras_apps.preprocessing_of(model_name)
    return "none"


def with_preprocessing(model, prep):
    """``model`` with an ``ImagenetPreprocess`` layer in front (the same layer objects). ``prep``: a
    ``Preprocessing`` or a mode string. A keras.applications-family model carries its own already."""
    mode = prep.mode if isinstance(prep, Preprocessing) else prep
    if not mode or mode == "none":
        return model
    own = _own_preprocess(model)
    if own is not None:
        if own.mode != mode:
            raise WeightsError(f"{model.name} preprocesses inside ({own.mode}, keras.applications' own); "
                               f"--preprocessing {mode} does not apply to it")
        return model
    if model.input_shape[-1] != 3:
        raise WeightsError(f"{mode} preprocessing is for RGB images; {model.name} takes "
                           f"{model.input_shape[-1]} channel(s) (use --preprocessing none)")
    import keras

    from kerascnn.layers import ImagenetPreprocess

    kwargs = {}
    if isinstance(prep, Preprocessing) and mode == "torch":
        kwargs = {"mean": prep.mean, "std": prep.std}
    return keras.Sequential([keras.Input(shape=model.input_shape[1:], name="images"),
                             ImagenetPreprocess(mode, name="imagenet_preprocess", **kwargs), *model.layers],
                            name=model.name)


def _own_preprocess(model):
    """The ``ImagenetPreprocess`` layer a keras.applications-family model is built with, or None."""
    layer = next((l for l in model.layers if type(l).__name__ != "InputLayer"), None)
    return layer if type(layer).__name__ == "ImagenetPreprocess" and not _is_sequential(model) else None


def _is_sequential(model) -> bool:
    return type(model).__name__ == "Sequential"


def _override(prep: Preprocessing, preprocessing: str | None, model_name: str) -> Preprocessing:
    """``--preprocessing MODE`` in place of the weights' own normalisation (the transform stays)."""
    import dataclasses

    if preprocessing is None or preprocessing == (prep.mode or "none"):
        return prep
    from kerascnn.registry import get_entry

    if get_entry(model_name).kind == "keras":
        raise WeightsError(f"{model_name} preprocesses inside ({prep.mode}, keras.applications' own); "
                           f"--preprocessing {preprocessing} does not apply to it")
    return dataclasses.replace(prep, mode=None if preprocessing == "none" else preprocessing,
                               origin="user", why=f"--preprocessing {preprocessing}; the weights are {prep.origin}'s")


def load_pretrained(model, spec: str, model_name: str, options: dict | None, preprocessing: str | None = None):
    """Load ``--weights`` into an already built ``model`` (``train``: the data decides its classes; a
    new head is allowed) and put the weights' normalisation in front of it. ``preprocessing``: a mode
    in place of the weights' own (``caffe``, ``torch``, ``tf``, ``none``), or None.
    Returns (model, report line, Preprocessing)."""
    wf = open_weights(spec, model_name, options, model.input_shape[1:], model.output_shape[-1])
    report = wf.load(model, model_name, options)
    prep = _override(wf.preprocessing(model_name, options, model.input_shape[1:]), preprocessing, model_name)
    return with_preprocessing(model, prep), report.line(wf.path), prep


def build_pretrained(model_name: str, options: dict | None, spec: str, preprocessing: str | None = None,
                     input_shape=None, require_head: bool = True):
    """A registered model with ``--weights`` for ``predict``/``evaluate``/``export``/``summary``: built
    with the classes of the file's classifier, loaded, the weights' normalisation in front. With
    ``require_head`` a model whose classifier the file does not hold (a ``_notop`` file, a head sized
    for another input) is refused: its predictions would be random. Returns (model, LoadReport line,
    Preprocessing)."""
    from kerascnn.registry import get_entry

    entry = get_entry(model_name)
    options = dict(options or {})
    shape = tuple(input_shape or entry.cfg.natural_input(options))
    wf = open_weights(spec, model_name, options, shape, entry.num_classes)
    k = wf.classes(model_name, options) or entry.num_classes
    model = entry.build(shape, k, **options)
    report = wf.load(model, model_name, options)
    if require_head and report.fresh:
        raise WeightsError(f"{wf.path} holds no trained classifier for {model_name} at "
                           f"{'x'.join(map(str, shape))} ({', '.join(report.fresh)} would start random); "
                           f"predict, evaluate and export need one: fine-tune a head first (kerascnn train "
                           f"{model_name} --weights {spec} --data DIR), then use the run")
    prep = _override(wf.preprocessing(model_name, options, shape), preprocessing, model_name)
    return with_preprocessing(model, prep), report.line(wf.path), prep


def own_preprocessing(model) -> Optional[Preprocessing]:
    """The normalisation layer a model carries (``imagenet_preprocess``: fine-tuned from pretrained
    weights, or a keras.applications-family model), as a ``Preprocessing`` with kerascnn's own
    transform (the pipeline the model was trained on); None without one."""
    layer = next((l for l in model.layers if type(l).__name__ == "ImagenetPreprocess"), None)
    if layer is None:
        return None
    return Preprocessing(layer.mode, None, "kerascnn", "the model's own imagenet_preprocess layer",
                         tuple(layer.mean), tuple(layer.std))


def resume_preprocessing(spec: str, mode: str | None):
    """The normalisation a resumed run rebuilds in front of its model: ``mode`` as recorded, with a timm
    checkpoint's own mean/std while its ``config.json`` is still beside the file."""
    if mode == "torch" and spec and str(spec).lower() != "imagenet" and Path(spec).is_file():
        from kerascnn.pretrained import torchvision as TV

        cfg = TV.timm_config(spec)
        if cfg and cfg.get("mean") and cfg.get("std"):
            return Preprocessing("torch", None, "timm", "timm's pretrained_cfg",
                                 tuple(float(v) for v in cfg["mean"]), tuple(float(v) for v in cfg["std"]))
    return mode
