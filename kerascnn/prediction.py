"""Top-k predictions for image files, from a Keras model, a run, or an exported SavedModel.

Image files are 8-bit (0..255), so for a Keras model they are scaled by 1/255: every kerascnn
model is trained on pixels mapped to [0, 1] (see ``data.ImageData.pixel_scale``). A SavedModel
written by ``kerascnn export`` has the scaling inside and takes raw pixels (uint8, or float
0..255), so it gets them unscaled, at the size its signature declares.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kerascnn import data as D
from kerascnn.errors import ConfigError, DataError

FILE_SCALE = 1.0 / 255.0


def is_savedmodel_dir(path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / "saved_model.pb").is_file()


MAX_JSON_BYTES = 16 << 20  # kerascnn.json / class_names.json of an export: a few KB, 16 MiB is generous


def _read_json(path: Path):
    """The parsed JSON file, or None when it is missing, not a regular file, too large or not JSON."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_JSON_BYTES:
            return None
        return json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None


def read_export_marker(path) -> dict | None:
    """The ``kerascnn.json`` of a folder written by ``kerascnn export`` (its ``format`` tag starts with
    ``kerascnn-savedmodel/``), or None."""
    f = Path(path) / "kerascnn.json"
    try:
        if not f.is_file() or f.stat().st_size > 1 << 20:
            return None
    except OSError:
        return None
    meta = _read_json(f)
    if isinstance(meta, dict) and str(meta.get("format", "")).startswith("kerascnn-savedmodel/"):
        return meta
    return None


def _load_export(path: Path, unsafe: bool = False):
    """SavedModel dir -> (run(raw float batch) -> probabilities, (H, W, C), class names or None).

    Unless ``unsafe``, the graph is checked against the classifier op allowlist first
    (``savedmodel_policy``): nothing of an untrusted SavedModel runs before that."""
    import tensorflow as tf

    if not unsafe:
        from kerascnn.savedmodel_policy import check_savedmodel

        check_savedmodel(path)
    try:
        loaded = tf.saved_model.load(str(path))
        fn = loaded.signatures["serving_default"]
    except KeyError:
        raise DataError(f"{path}: the SavedModel has no 'serving_default' signature") from None
    except Exception as e:
        raise DataError(f"{path}: not a loadable SavedModel ({e.__class__.__name__})") from None
    inputs = fn.structured_input_signature[1]
    if len(inputs) != 1:
        raise DataError(f"{path}: serving_default takes {len(inputs)} inputs ({', '.join(inputs)}); expected one "
                        f"batch of images")
    arg, spec = next(iter(inputs.items()))
    meta = _read_json(path / "kerascnn.json") or {}
    dims = list(spec.shape)[1:]
    if len(dims) != 3:
        raise DataError(f"{path}: serving_default input {arg} has shape {spec.shape}; expected (N, H, W, C)")
    fallback = list(meta.get("input_shape") or [None, None, None])
    shape = tuple(int(d) if d is not None else fallback[i] for i, d in enumerate(dims))
    if any(v is None for v in shape):
        raise DataError(f"{path}: serving_default input {arg} has no fixed image size ({spec.shape}) and no "
                        f"kerascnn.json gives one")
    names = None
    for f in (path / "assets" / "class_names.json", path / "class_names.json"):
        if f.is_file():
            names = _read_json(f)
            break
    names = names or meta.get("class_names")

    def run(raw: np.ndarray) -> np.ndarray:
        if spec.dtype == tf.uint8:
            raw = np.clip(np.round(raw), 0, 255).astype(np.uint8)
        out = fn(**{arg: tf.constant(raw, dtype=spec.dtype)})
        out = out.get("probabilities", next(iter(out.values()))) if isinstance(out, dict) else out
        return np.asarray(out, dtype=np.float32)

    return run, shape, names


def predict_files(ref: str, paths, top_k: int = 5, unsafe: bool = False, class_names=None,
                  weights: str | None = None, preprocessing: str | None = None, options: dict | None = None) -> list:
    """[{"image": path, "top": [{"class", "index", "probability"}, ...]}, ...] for every image file.
    ``weights`` (with ``options``, ``preprocessing``): a registered model with pretrained weights."""
    return list(iter_predictions(ref, paths, top_k, unsafe, class_names, weights, preprocessing, options))


def iter_predictions(ref: str, paths, top_k: int = 5, unsafe: bool = False, class_names=None,
                     weights: str | None = None, preprocessing: str | None = None, options: dict | None = None,
                     batch: int = 256, report=None):
    """``predict_files`` one row at a time, the files decoded ``batch`` at a time (memory bounded by
    one batch however large the folder; rows in sorted file order). Bad files and a wrong
    ``class_names`` are reported before the first row. ``report(notes)``, when given, is called once
    before the first row with ``{"preprocessing": text}`` where more runs than kerascnn's own scaling
    (pretrained weights and their source's transform, a normalisation layer in the model, an export
    that records its transform) and ``{"warning": text}`` for an untrained model."""
    p = Path(ref)
    transform, prep_text, notes = None, None, {}
    if is_savedmodel_dir(p):
        run, shape, names = _load_export(p, unsafe)
        scale = 1.0  # the export scales inside
        transform, prep_text = export_preprocessing(p)
        if transform is not None and tuple(transform.size) != tuple(shape[:2]):
            transform, prep_text = None, None   # a kerascnn.json that does not fit the signature: ignored
    else:
        from kerascnn.evaluation import predict_probabilities
        from kerascnn.runs import is_untrained, resolve_for_inference

        model, info, prep = resolve_for_inference(ref, unsafe=unsafe, options=options, weights=weights,
                                                  preprocessing=preprocessing)
        shape, names, scale = tuple(model.input_shape[1:]), info.class_names, FILE_SCALE
        if prep is not None:
            transform, prep_text = prep.transform, prep.describe()
        if not weights and is_untrained(info):
            notes["warning"] = (f"{ref} is an untrained model: its outputs come from random initial weights "
                                f"(pass --weights, or train it and pass the run)")

        def run(x):
            return predict_probabilities(model, x)
    if prep_text:
        notes = {"preprocessing": prep_text, **notes}
    if report is not None and notes:
        report(notes)
    labels = None
    for x, files in _batches(paths, shape, scale, batch, transform):
        probs = run(x)
        k = probs.shape[1]
        if labels is None:
            labels = _class_labels(names, class_names, k)
        for f, row in zip(files, probs):
            order = np.argsort(-row, kind="stable")[:min(top_k, k)]
            yield {"image": f, "top": [{"class": labels[i], "index": int(i), "probability": float(row[i])}
                                       for i in order]}


def _batches(paths, shape, scale, batch, transform=None):
    """(float batch, file names): kerascnn's own resize, or the weights' source transform
    (``kerascnn.pretrained.transforms``), ``batch`` files at a time."""
    if transform is None:
        yield from D.iter_image_batches(paths, shape[:2], shape[2], scale, batch)
        return
    from kerascnn.data.stream import header_pass

    files = D.image_files(paths)
    header_pass(files, "stop")
    for i in range(0, len(files), batch):
        part = files[i:i + batch]
        yield transform.load(part, scale), [str(f) for f in part]


def export_preprocessing(path) -> tuple:
    """(EvalTransform or None, description or None) recorded in an export's kerascnn.json."""
    from kerascnn.pretrained.transforms import EvalTransform

    meta = read_export_marker(path) or {}
    prep = meta.get("preprocessing")
    if not isinstance(prep, dict):
        return None, None
    outside = prep.get("outside_graph")
    transform = EvalTransform.from_dict(outside) if isinstance(outside, dict) else None
    text = str(prep.get("description") or "")[:500] or None
    return transform, text


def _class_labels(names, class_names, k: int) -> list:
    if class_names is not None:
        names = D.parse_class_names(class_names)
        if len(names) != k:
            raise ConfigError(f"--class-names gives {len(names)} names but the model has {k} classes")
    return [str(n) for n in names] if names and len(names) == k else [str(i) for i in range(k)]
