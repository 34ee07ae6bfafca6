"""`kerascnn evaluate`: loss, top-1/top-k accuracy, per-class precision/recall/F1, confusion matrix.

Metrics come from scikit-learn (``precision_recall_fscore_support``, ``confusion_matrix``)
rather than hand-written code; predictions from the Keras model in batches.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from kerascnn import data as D
from kerascnn import fsutil
from kerascnn.errors import ConfigError, DataError


def predict_probabilities(model, x, batch_size: int = 256) -> np.ndarray:
    """Class probabilities for images in memory or on disk (a ``kerascnn.data.source.DataSource``),
    batch by batch through Keras's compiled predict function (``predict_on_batch``: one traced graph,
    the convolution + bias + activation fused) rather than one eager op at a time (2x slower on a CPU)."""
    from kerascnn.data.source import as_source

    out = [np.asarray(forward(model, xb), dtype=np.float32)   # strict: matched to the labels by position
           for xb, _ in as_source(x).batches(batch_size, strict=True)]
    return np.concatenate(out) if out else np.zeros((0, int(model.output_shape[-1])), np.float32)


def forward(model, xb):
    """One batch through ``model`` in inference mode: ``predict_on_batch`` where Keras offers it."""
    run = getattr(model, "predict_on_batch", None)
    return run(xb) if run is not None else model(xb, training=False)


def metrics_from_probabilities(probs: np.ndarray, y: np.ndarray, class_names: list) -> dict:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    k = probs.shape[1]
    eps = 1e-7
    loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], eps, 1.0))))
    ranked = np.argsort(-probs, axis=1)
    out = {"images": int(len(y)), "loss": loss, "accuracy": float(np.mean(ranked[:, 0] == y))}
    for top in (3, 5):
        if k > top:
            out[f"top{top}_accuracy"] = float(np.mean(np.any(ranked[:, :top] == y[:, None], axis=1)))
    labels = list(range(k))
    p, r, f, s = precision_recall_fscore_support(y, ranked[:, 0], labels=labels, zero_division=0)
    out["per_class"] = [{"class": str(class_names[i]) if i < len(class_names) else str(i), "precision": float(p[i]),
                         "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])} for i in labels]
    present = s > 0  # classes absent from this split would drag the average to 0 for no reason
    out["macro_f1"] = float(np.mean(f[present])) if present.any() else 0.0
    out["confusion_matrix"] = confusion_matrix(y, ranked[:, 0], labels=labels).tolist()
    return out


def evaluate(ref: str, dataset: str | None = None, data: str | None = None, split: str = "test",
             batch_size: int = 256, out_dir: str | None = None, unsafe: bool = False, which: str = "best",
             class_names=None, weights: str | None = None, preprocessing: str | None = None,
             options: dict | None = None) -> dict:
    from kerascnn.runs import is_untrained, resolve_for_inference

    # with --weights: the file's classes, its source's preprocessing (the transform here, the rest in the model)
    model, info, prep = resolve_for_inference(ref, which, unsafe, options, weights, preprocessing)
    cfg = info.config
    if dataset is None and data is None:
        data = cfg.data
        dataset = cfg.dataset if not data else None
        if not data and not dataset:
            dataset = "digits"
    shape = tuple(model.input_shape[1:])
    k = int(model.output_shape[-1])
    from kerascnn.data import stream

    transform = prep.transform if prep is not None else None
    if transform is not None:   # the weights' source transform, on every image as decoded (not pre-resized)
        d, x, y = _source_split(dataset, data, cfg, split, shape, class_names)
    elif data and stream.file_source(data):   # streamed: only the split's own files are read
        d, x, y = _streamed_split(Path(data), cfg, split, shape, class_names)
    else:
        d = D.load_data(dataset, data, seed=cfg.seed, class_names=class_names)
        x, y = (d.x_test, d.y_test) if split == "test" else (d.x_train, d.y_train)
        # the data's own scale maps its pixels to [0, 1], the domain every kerascnn model is trained on
        # (uint8 or float 0..255 -> 1/255, float already in [0, 1] -> 1.0), whatever the run's data was
        x = D.prepare_images(x, shape[:2], shape[2], d.pixel_scale)
    if int(y.max()) >= k:
        raise DataError(f"{d.name}: label {int(y.max())} is outside the model's {k} classes")
    if transform is not None:
        probs = _transformed_probabilities(model, transform, x, batch_size)
    else:
        probs = predict_probabilities(model, x, batch_size)   # arrays, or images decoded from disk batch by batch
    names = info.class_names if len(info.class_names) == k and not class_names else d.class_names
    result = metrics_from_probabilities(probs, y, names)
    result.update({"model": str(ref), "data": d.name, "split": split, "class_names": list(names)})
    if prep is not None:
        result["preprocessing"] = prep.describe()
    if not weights and is_untrained(info):
        result["warning"] = f"{ref} is an untrained model: random initial weights (pass --weights, or a run)"
    model_file = info.model_path.name if info.run_dir and info.model_path else None
    if model_file:
        result["model_file"] = model_file
    if out_dir is None:
        base = info.run_dir if info.run_dir else Path(".")
        suffix = "-last" if model_file == "last.keras" else ""
        out_dir = Path(base) / f"eval-{_slug(d.name)}-{split}{suffix}"
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fsutil.atomic_write_json(out_dir / "metrics.json", {k_: v for k_, v in result.items() if k_ != "confusion_matrix"})
    fsutil.atomic_write_json(out_dir / "confusion.json", {"class_names": list(names),
                                                         "matrix": result["confusion_matrix"]})
    from kerascnn.plots import plot_confusion

    plot_confusion(result["confusion_matrix"], names, out_dir / "confusion.png",
                   title=f"{Path(str(ref)).name} on {d.name} ({split}): accuracy {result['accuracy']:.2%}")
    result["out_dir"] = str(out_dir)
    return result


def _streamed_split(path: Path, cfg, split: str, shape: tuple, class_names):
    """(ImageData naming the data, the split's images on disk at the model's input, its labels): only the
    split's files are read (``stream.scan_split``), the other split is listed, never opened."""
    import dataclasses

    from kerascnn.data import stream
    from kerascnn.data.source import as_source

    x, y, names, k = stream.scan_split(path, cfg.seed, cfg.bad_files, split)
    names = D.parse_class_names(class_names) or names or [str(i) for i in range(k)]
    d = D.ImageData(x, y, x, y, list(names), stream.source_name(path))
    return d, as_source(dataclasses.replace(x, size=tuple(shape[:2]), channels=int(shape[2])), y), y


def _source_split(dataset, data, cfg, split: str, shape: tuple, class_names):
    """(ImageData, the split's images as decoded -- a list of files, or uint8 arrays --, labels) for
    a source transform: folders and manifests by file (``stream.scan``), arrays as they are."""
    from kerascnn.data import stream

    if data and stream.wants_stream("on", data, shape[:2], shape[2], strict=False):
        d, x, y = _streamed_split(Path(data), cfg, split, shape, class_names)
        images = getattr(x, "images", x)
        if hasattr(images, "files"):
            return d, list(images.files), y
        raise DataError(f"{data}: TFRecord shards hold no files to resize as the weights' source does; "
                        f"evaluate a folder or a manifest of images")
    d = D.load_data(dataset, data, seed=cfg.seed, class_names=class_names)
    x, y = (d.x_test, d.y_test) if split == "test" else (d.x_train, d.y_train)
    if x.dtype != np.uint8:   # the data's own scale to [0, 1], then the 8-bit pixels the transform resizes
        x = np.clip(np.round(x.astype(np.float32) * np.float32(d.pixel_scale * 255.0)), 0, 255).astype(np.uint8)
    return d, x, y


def _transformed_probabilities(model, transform, x, batch_size: int) -> np.ndarray:
    """The model's probabilities on ``x`` (image files, or uint8 arrays) after ``transform``."""
    out = []
    for i in range(0, len(x), batch_size):
        part = x[i:i + batch_size]
        xb = transform.load(part) if isinstance(part, list) else transform.prepare(part)
        out.append(np.asarray(model(xb, training=False), np.float32))
    return np.concatenate(out) if out else np.zeros((0, int(model.output_shape[-1])), np.float32)


def _slug(name: str) -> str:
    import re

    name = name.split(":", 1)[-1]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).stem if "/" in name else name)[:40]


def _check_out_dir(out_dir: Path) -> None:
    """Refuse an ``--out`` holding a metrics.json / confusion.json / confusion.png that no earlier
    ``kerascnn evaluate`` wrote (replacing them would lose the user's files)."""
    import json
    import os

    names = [n for n in ("metrics.json", "confusion.json", "confusion.png") if os.path.lexists(out_dir / n)]
    if not names:
        return
    metrics = out_dir / "metrics.json"
    try:
        ours = (all((out_dir / n).is_file() and not (out_dir / n).is_symlink() for n in names)
                and metrics.stat().st_size < (1 << 24)
                and {"model", "data", "split", "accuracy"} <= set(json.loads(metrics.read_text())))
    except (OSError, ValueError, TypeError):
        ours = False
    if not ours:
        raise ConfigError(f"--out {out_dir} already holds {names[0]}, not written by kerascnn evaluate; it is left "
                          f"as it is: choose another --out")
