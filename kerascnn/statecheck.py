"""Check a training state file (``backup/state.npz``) against the model it is about to be loaded
into, from the npz member headers only (nothing decompressed, nothing assigned).

``training._load_state`` reads ``w0..wN`` (the model's weights, in order), ``o:*`` (optimizer
variables) and ``meta`` (JSON: epoch, best, history, ...). A state from another model (other
weight shapes or count) or missing a key used to surface as a raw Keras shape error or a
``KeyError``; ``check_state`` turns each into one ``DataError`` naming the file and the problem.
"""
from __future__ import annotations

from pathlib import Path

from kerascnn.errors import DataError

META_KEYS = ("epoch", "best", "history")


def check_state(path, weight_shapes, meta: dict | None = None, meta_keys=META_KEYS) -> None:
    """Raise DataError unless ``path`` holds exactly ``len(weight_shapes)`` weights ``w0..`` with those
    shapes and a ``meta`` record; when ``meta`` (the decoded record) is given, it must have ``meta_keys``."""
    from kerascnn.data import check_npz_headers

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no training state file")
    members = check_npz_headers(path)
    if "meta" not in members:
        raise DataError(f"{path}: the training state has no 'meta' record; it was not written by kerascnn train")
    stored = sorted((k for k in members if k[:1] == "w" and k[1:].isdigit()), key=lambda k: int(k[1:]))
    if len(stored) != len(weight_shapes):
        raise DataError(f"{path}: the training state holds {len(stored)} weight arrays but the model has "
                        f"{len(weight_shapes)}; it belongs to another model")
    for i, shape in enumerate(weight_shapes):
        key = f"w{i}"
        if key not in members:
            raise DataError(f"{path}: the training state has no {key}; it is incomplete")
        got = members[key][0]
        if tuple(got) != tuple(int(d) for d in shape):
            raise DataError(f"{path}: weight {i} has shape {tuple(got)} in the state but {tuple(shape)} in the "
                            f"model; the state belongs to another model")
    if meta is not None:
        missing = [k for k in meta_keys if k not in meta]
        if missing:
            raise DataError(f"{path}: the training state's meta record has no {', '.join(missing)}; it is "
                            f"incomplete or from another version")
