"""Top-k predictions for image files, from a Keras model, a run, or an exported SavedModel."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kerascnn import data as D
from kerascnn.errors import DataError


def _load_export(path: Path):
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
        fn = loaded.signatures["serving_default"]
    except Exception as e:
        raise DataError(f"{path}: not a loadable SavedModel ({e.__class__.__name__})") from None
    spec = list(fn.structured_input_signature[1].values())[0]
    shape = tuple(int(v) for v in spec.shape[1:])
    meta_file = path / "kerascnn.json"
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    names_file = path / "assets" / "class_names.json"
    names = meta.get("class_names") or (json.loads(names_file.read_text()) if names_file.is_file() else None)

    def run(x_scaled: np.ndarray) -> np.ndarray:
        raw = x_scaled / float(meta.get("pixel_scale", 1 / 255))
        if spec.dtype == tf.uint8:
            raw = np.clip(np.round(raw), 0, 255).astype(np.uint8)
        out = fn(**{spec.name or "images": tf.constant(raw, dtype=spec.dtype)})
        return np.asarray(list(out.values())[0])

    return run, shape, names, float(meta.get("pixel_scale", 1 / 255))


def predict_files(ref: str, paths, top_k: int = 5, unsafe: bool = False) -> list:
    p = Path(ref)
    if p.is_dir() and (p / "saved_model.pb").is_file():
        run, shape, names, scale = _load_export(p)
    else:
        from kerascnn.evaluation import predict_probabilities
        from kerascnn.runs import resolve_model

        model, info = resolve_model(ref, unsafe=unsafe)
        shape, names, scale = tuple(model.input_shape[1:]), info.class_names, info.pixel_scale

        def run(x):
            return predict_probabilities(model, x)
    x, files = D.load_image_files(paths, shape[:2], shape[2], scale)
    probs = run(x)
    k = probs.shape[1]
    names = names if names and len(names) == k else [str(i) for i in range(k)]
    out = []
    for f, row in zip(files, probs):
        order = np.argsort(-row)[:min(top_k, k)]
        out.append({"image": f, "top": [{"class": names[i], "index": int(i), "probability": float(row[i])}
                                        for i in order]})
    return out
