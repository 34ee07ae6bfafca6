"""Run directories and model references: what `evaluate`, `predict`, `export` and
`visualize` accept as MODEL_OR_RUN.

A run directory (written by ``kerascnn train``) holds::

    config.json     the full configuration: model, model_options, input_shape, num_classes,
                    class_names, pixel_scale, data source, training options, seed, versions
    best.keras      best model by validation metric;   last.keras  the last epoch's model
    history.csv     metrics.json   curves.png   tb/ (TensorBoard)   backup/ (resume state)

A reference is resolved in this order: a run directory, a ``.keras`` file (a
``config.json`` beside it is used when present), a registered model name (built
untrained). Each comes with its ``RunRecord`` (``kerascnn.training.record``, the only reader of
config.json); a model without a run gets ``RunRecord.for_model``, whose options are the training
defaults. Loading keeps Keras's safe mode on unless ``unsafe=True``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from kerascnn.errors import ConfigError, DataError, first_line
from kerascnn.training.record import CONFIG_FILE, RunRecord, is_run_dir  # noqa: F401  (is_run_dir: re-exported)

MODEL_FILES = ("best.keras", "last.keras")


def load_keras_model(path, unsafe: bool = False):
    """``keras.models.load_model`` with safe mode on and one-line errors."""
    import keras

    import kerascnn.layers  # noqa: F401  registers InceptionBlock / ResidualBlock

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such model file")
    from kerascnn.pretrained.limits import check_keras_file

    check_keras_file(path)       # zip members and HDF5 datasets against the memory, before Keras reads them
    try:
        return keras.models.load_model(path, safe_mode=not unsafe, compile=False)
    except ValueError as e:
        if "safe_mode" in str(e) or "unsafe" in str(e).lower() or "lambda" in str(e).lower():
            raise ConfigError(f"{path}: the model contains code (a Lambda layer) and safe mode refuses to "
                              f"load it; pass --unsafe only if you trust this file") from None
        raise DataError(f"{path}: not a loadable Keras model ({first_line(e, 200)})") from None
    except Exception as e:  # zip errors, h5 errors, truncated files
        raise DataError(f"{path}: not a loadable Keras model ({first_line(e, 200)})") from None


def check_classifier(model, path) -> None:
    """A loaded model kerascnn can use: one image input (N, H, W, C) with a fixed size and C 1 or 3,
    one output of class scores (N, K). Anything else is one DataError naming the file."""
    def shape_of(t):
        return tuple(getattr(t, "shape", ()) or ())

    inputs, outputs = list(getattr(model, "inputs", None) or []), list(getattr(model, "outputs", None) or [])
    if len(inputs) != 1:
        raise DataError(f"{path}: the model takes {len(inputs)} inputs; kerascnn needs one batch of images")
    if len(outputs) != 1:
        raise DataError(f"{path}: the model has {len(outputs)} outputs; kerascnn needs one (class scores)")
    shape = shape_of(inputs[0])
    fmt = "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"
    if len(shape) != 4:
        raise DataError(f"{path}: the model's input is {fmt}, not images (None, H, W, C)")
    if any(d is None for d in shape[1:]):
        raise DataError(f"{path}: the model's input {fmt} has no fixed image size; kerascnn needs (None, H, W, C) "
                        f"with H, W and C fixed")
    if shape[3] not in (1, 3):
        raise DataError(f"{path}: the model's input {fmt} has {shape[3]} channels; expected 1 (gray) or 3 (RGB)")
    out = shape_of(outputs[0])
    ofmt = "(" + ", ".join("None" if d is None else str(d) for d in out) + ")"
    if len(out) != 2 or out[1] is None or out[1] < 1:
        raise DataError(f"{path}: the model's output is {ofmt}, not one score per class (None, K)")


def looks_like_path(ref: str) -> bool:
    return "/" in ref or "\\" in ref or ref.endswith(".keras") or ref.startswith(".")


def check_model_ref(ref: str) -> None:
    """The cheap part of ``resolve_model`` (no TensorFlow): a run directory with a saved model, an
    existing file, or a registered model name; else one line saying which of them it is not."""
    p = Path(ref)
    if p.is_dir():
        if not is_run_dir(p):
            raise DataError(f"{p}: not a kerascnn run directory (no {CONFIG_FILE})")
        if not any((p / name).is_file() for name in MODEL_FILES):
            raise DataError(f"{p}: the run has no saved model yet ({' or '.join(MODEL_FILES)})")
        return
    if p.is_file():
        return
    if looks_like_path(ref):
        raise ConfigError(f"{ref}: no such file or directory")
    from kerascnn.registry import get_entry

    get_entry(ref)  # raises ModelNotFound with suggestions


def resolve_model(ref: str, which: str = "best", unsafe: bool = False, input_shape=None, num_classes=None,
                  options=None):
    """MODEL_OR_RUN -> (keras model, its ``RunRecord``)."""
    check_model_ref(ref)     # a run directory with a model, a file, or a registered name
    p = Path(ref)
    if p.is_dir():
        record = RunRecord.load(p)
        order = (f"{which}.keras",) + tuple(f for f in MODEL_FILES if f != f"{which}.keras")
        for name in order:
            if (p / name).is_file():
                model = load_keras_model(p / name, unsafe)
                check_classifier(model, p / name)
                return model, dataclasses.replace(record, model_path=p / name)
        raise DataError(f"{p}: the run has no saved model yet ({' or '.join(MODEL_FILES)})")
    if p.suffix == ".keras" or p.is_file():
        model = load_keras_model(p, unsafe)
        check_classifier(model, p)
        if (p.parent / CONFIG_FILE).is_file():
            return model, dataclasses.replace(RunRecord.load(p.parent), model_path=p)
        return model, RunRecord.for_model(model.name, model.input_shape[1:], model.output_shape[-1], model_path=p)
    from kerascnn.registry import model_ref

    model = model_ref(ref, dict(options or {}), input_shape, num_classes).build()   # a registered name (checked)
    return model, RunRecord.for_model(ref, model.input_shape[1:], model.output_shape[-1], options)


def resolve_for_inference(ref: str, which: str = "best", unsafe: bool = False, options=None, weights=None,
                          preprocessing=None):
    """``resolve_model`` for predict / evaluate / export -> (model, RunRecord, Preprocessing or None).

    With ``weights`` (a registered name and ``--weights``) the model is built with the file's classes
    and its source's preprocessing, and refused when the file holds no trained classifier
    (``kerascnn.pretrained.build_pretrained``). Otherwise a model that carries an ``imagenet_preprocess``
    layer (a run fine-tuned from pretrained weights, a keras.applications-family model) reports it:
    its images go through kerascnn's own pipeline, the one it was trained on."""
    from kerascnn import pretrained as P

    if weights:
        model, _, prep = P.build_pretrained(ref, options, weights, preprocessing)
        return model, RunRecord.for_model(ref, model.input_shape[1:], model.output_shape[-1], options), prep
    model, info = resolve_model(ref, which=which, unsafe=unsafe, options=options)
    return model, info, P.own_preprocessing(model)


def is_untrained(info: RunRecord) -> bool:
    """A registered model built here without weights: its outputs come from random initial weights."""
    return info.run_dir is None and info.model_path is None
