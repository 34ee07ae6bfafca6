"""``load_data``: a built-in data set by name, or ``--data`` (``.npz``, class folder, or a format in
``kerascnn.data.formats``) -> validated ``ImageData``; ``parse_class_names`` for ``--class-names``."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from kerascnn.data.arrays import ImageData, _load_npz, _short, _validated
from kerascnn.data.images import _load_folder, _regular_file
from kerascnn.data.splits import split_validation
from kerascnn.errors import ConfigError, DataError

BUILTIN = ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100")


CLASS_NAMES = {
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
}


def parse_class_names(value) -> list | None:
    """``--class-names``: a file (one name per line, or a JSON list), a comma list ``a,b,c``, or a
    list already. Names must be non-empty and distinct."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        names = [str(v).strip() for v in value]
    else:
        text, path = str(value), Path(str(value))
        if path.is_file():
            try:
                raw = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise ConfigError(f"--class-names {path}: cannot read it ({_short(e)})") from None
            if raw.lstrip().startswith("["):
                import json

                try:
                    names = [str(v).strip() for v in json.loads(raw)]
                except ValueError as e:
                    raise ConfigError(f"--class-names {path}: not a JSON list ({_short(e)})") from None
            else:
                names = [line.strip() for line in raw.splitlines() if line.strip()]
        elif "," in text or not ("/" in text or text.endswith((".txt", ".json"))):
            names = [n.strip() for n in text.split(",")]
        else:
            raise ConfigError(f"--class-names {text}: no such file")
    if len(names) < 2 or any(not n for n in names):
        raise ConfigError(f"--class-names: expected two or more non-empty names (a file, or a,b,c); received {str(value)[:80]!r}")
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise ConfigError(f"--class-names: {dup!r} appears twice")
    return names


def load_data(dataset: str | None = "digits", data: str | None = None, num_classes: int | None = None,
              seed: int = 0, class_names=None) -> ImageData:
    """A built-in data set by name, or a user's ``.npz`` file / class-folder directory (``data`` wins),
    or one of the formats in ``kerascnn.data.formats`` (CIFAR archives, IDX, manifests, TFRecord shards).

    ``class_names`` (see ``parse_class_names``) names the classes of any source, replacing the
    data's own names (an ``.npz`` file's ``class_names`` array, folder names, "0".."9")."""
    names = parse_class_names(class_names)
    if data:
        path = Path(data)
        from kerascnn.data import formats

        if not path.exists() and formats.detect(path) != "tfrecord-glob":
            raise DataError(f"{path}: no such file or directory")

        kind = formats.detect(path)
        if kind is not None:
            if path.is_file():
                _regular_file(path, "data", allow_empty=False)
            out = formats.load(path, kind, seed)
        elif path.is_dir():
            out = _load_folder(path, seed)
        elif path.suffix.lower() == ".npz":
            _regular_file(path, ".npz", allow_empty=True)
            out = _load_npz(path, seed)
        else:
            raise DataError(f"{path}: expected a .npz file, a directory with one sub-folder per class, a CIFAR "
                            f"python archive (.tar.gz), a manifest (.csv/.txt: path,label) or TFRecord shards")
    else:
        dataset = dataset or "digits"
        if dataset not in BUILTIN:
            raise ConfigError(f"unknown dataset {dataset!r}; choose from {', '.join(BUILTIN)} or pass --data")
        out = _load_digits(seed) if dataset == "digits" else _load_keras(dataset)
    if names is not None:
        top = int(max(out.y_train.max(), out.y_test.max()))
        if len(names) <= top:
            raise ConfigError(f"--class-names gives {len(names)} names but {out.name} has labels up to {top}")
        import dataclasses

        out = dataclasses.replace(out, class_names=list(names))
    if num_classes is not None and out.num_classes > num_classes:
        bad = int(max(out.y_train.max(), out.y_test.max()))
        raise DataError(f"{out.name}: labels go up to {bad} but the model has {num_classes} classes")
    return out


def _load_digits(seed: int) -> ImageData:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]   # 0..16 -> 0..255
    y = d.target.astype(np.int64)
    x_tr, y_tr, x_te, y_te = split_validation(x, y, 0.2, seed=1234)  # fixed test split, independent of --seed
    return ImageData(x_tr, y_tr, x_te, y_te, [str(i) for i in range(10)], "digits")


def _keras_cache_dir() -> Path:
    """Where ``keras.datasets`` caches downloads (``$KERAS_HOME/datasets``, default ``~/.keras/datasets``)."""
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser()
    if home.exists() and not os.access(home, os.W_OK):  # Keras falls back to /tmp/.keras then
        home = Path("/tmp/.keras")
    return home / "datasets"


def _load_keras(name: str) -> ImageData:
    import keras

    loader = getattr(keras.datasets, name)
    try:
        (x_tr, y_tr), (x_te, y_te) = loader.load_data()
    except Exception as e:  # no network and no cached copy (URLError, HTTPError, OSError ...)
        raise DataError(f"cannot load {name}: not in the Keras cache {_keras_cache_dir()} and the download failed "
                        f"({_short(e)}); pass --data FILE.npz with x_train, y_train, x_test, y_test "
                        f"instead") from None
    names = CLASS_NAMES.get(name) or [str(i) for i in range(int(max(y_tr.max(), y_te.max())) + 1)]
    return _validated(x_tr, y_tr, x_te, y_te, names, name, name)


def memory_plan(path, size: tuple, channels: int):
    """(raw image bytes, images prepared for training, load copies, hint) of ``--data PATH`` from
    headers, sizes and counts only (nothing decoded), for ``guard.check_in_memory``; None when the
    format is not known here (``load_data`` then says what is wrong)."""
    from kerascnn.data import formats, stream

    path = Path(path)
    try:
        kind = formats.detect(path)
        if stream.file_source(path):   # folders, manifests, shards: raw size taken at the model's input
            n = stream.count_files(path)
            return n * int(size[0]) * int(size[1]) * int(channels), n, 2.0, "stream it from disk (--stream on)"
        more = "use a smaller --image-size or a machine with more memory"
        if kind is None and path.suffix.lower() == ".npz":
            from kerascnn.data.arrays import _npz_members

            m = _npz_members(path)
            if "x_train" not in m or not m["x_train"][0] or any(not m[k][0] for k in ("x_test",) if k in m):
                return None   # no images or 0-d arrays: load_data names what is wrong
            shape, dtype = m["x_train"]
            raw = sum(int(np.prod(m[k][0], dtype=object)) * m[k][1].itemsize for k in ("x_train", "x_test") if k in m)
            n = int(shape[0]) if "x_test" in m else int(shape[0]) - int(round(0.2 * int(shape[0])))
            return raw, n, 2.0 + (4.0 / dtype.itemsize if dtype.kind == "f" else 0.0), f"{more} (an .npz loads whole)"
        if kind in ("cifar-archive", "cifar-dir"):
            sizes = _cifar_member_sizes(path, kind)
            train = sum(v for k, v in sizes.items() if k.startswith("data_batch_") or k == "train")
            return sum(sizes.values()), train // 3073, 4.0, f"{more} (a CIFAR archive loads whole)"
        if kind == "idx-dir":
            dims = [formats.idx_dims(path, name) for name in (formats.IDX_FILES[0], formats.IDX_FILES[2])]
            raw = sum(int(np.prod(d, dtype=object)) for d in dims)
            return raw, int(dims[0][0]), 3.0, f"{more} (IDX files load whole)"
    except (OSError, DataError, ValueError, EOFError, IndexError, KeyError, TypeError):
        return None   # whatever is wrong with the file, load_data says it in one line
    return None


def _cifar_member_sizes(path: Path, kind: str) -> dict:
    """{batch name: bytes} of a CIFAR archive (its tar index) or extracted folder."""
    names = ("batches.meta", "test_batch", "meta", "train", "test")
    if kind == "cifar-dir":
        return {f.name: f.stat().st_size for f in path.iterdir()
                if f.is_file() and (f.name in names or f.name.startswith("data_batch_"))}
    import tarfile

    with tarfile.open(path, "r:*") as tar:
        return {i.name.rsplit("/", 1)[-1]: i.size for i in tar.getmembers()
                if i.isfile() and (i.name.rsplit("/", 1)[-1] in names or i.name.rsplit("/", 1)[-1].startswith("data_batch_"))}
