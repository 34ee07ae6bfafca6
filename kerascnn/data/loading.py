"""``load_data``: a built-in data set by name, or ``--data`` (``.npz``, class folder, or a format in
``kerascnn.data.formats``) -> validated ``ImageData``; ``parse_class_names`` for ``--class-names``;
image files decoded into memory by the streams' batch decoders (``_decode_stack`` for a folder,
``load_image_files`` / ``iter_image_batches`` for predict)."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from kerascnn.data.arrays import ImageData, _check_fits, _load_npz, _short, _validated
from kerascnn.data.images import DataWarning, _regular_file, _scan_folder, image_files
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


# --------------------------------------------------------------------------- image files into memory
def _decode_stack(src, files: list) -> np.ndarray:
    """Image files -> one uint8 (N, H, W, C) array at the most common size and channel count, with
    the pixels of PIL + ``_stack`` (JPEG/PNG already at that size and mode decoded by TensorFlow,
    JPEG with PIL's IDCT; the rest through PIL and ``_conform``), decoded in parallel straight into
    the array (``stream.decode_raw``). The header pass first: a bad file is named before anything
    is decoded, and a folder whose decoded images would not fit twice is refused."""
    from kerascnn.data import headers, stream

    names = [str(f) for f in files]
    _, shapes, _ = headers.header_pass(names, "stop")
    total = sum(h * w * c for h, w, c, _, _ in shapes)
    _check_fits(src, (2 * total,), 1, f"{len(files):,} images decoded and stacked in memory",
                "; stream them from disk instead (--stream on)")
    x, _ = stream._file_images(src, names, "stop", shapes=shapes)
    size, channels = tuple(x.raw_size), x.raw_channels
    _check_fits(Path(names[0]).parent if names else "images", (len(names),) + size + (channels,), 1,
                f"{len(names):,} images at {size[0]}x{size[1]}x{channels}")
    out = stream.decode_raw(x)
    converted = sum(1 for s in shapes if s[2] != channels)
    resized = sum(1 for s in shapes if s[:2] != size)
    if converted or resized:
        mode = "gray" if channels == 1 else "RGB"
        warnings.warn(DataWarning(f"{len(names)} images of mixed modes/sizes: {converted} converted to {mode}, "
                                  f"{resized} resized to {size[0]}x{size[1]} (the most common)"), stacklevel=3)
    return out


def _load_folder(root: Path, seed: int) -> ImageData:
    if (root / "train").is_dir() and (root / "test").is_dir():
        names, f_tr, y_tr = _scan_folder(root / "train")
        names_te, f_te, y_te = _scan_folder(root / "test")
        if names_te != names:
            raise DataError(f"{root}: train/ and test/ have different class folders")
        x = _decode_stack(root, f_tr + f_te)
        x_tr, x_te = x[:len(f_tr)], x[len(f_tr):]
    else:
        names, files, y = _scan_folder(root)
        x = _decode_stack(root, files)
        x_tr, y_tr, x_te, y_te = split_validation(x, y, 0.2, seed)
    return _validated(x_tr, y_tr, x_te, y_te, names, f"dir:{root}", root)


def load_image_batch(files, image_size, channels: int, pixel_scale: float = 1 / 255) -> np.ndarray:
    """Image files -> float32 batch ready for the model, each image resized from its own size."""
    return load_image_files(files, image_size, channels, pixel_scale)[0]


def iter_image_batches(paths, image_size, channels: int, pixel_scale: float = 1 / 255, batch: int = 256):
    """``load_image_files`` in batches of ``batch`` files, in the same (sorted) order: memory bounded
    by a few batches whatever the number of files, decoded in parallel (``stream.file_batches``).
    Every file's header is checked first (a bad file is named before any batch is decoded).
    Yields (float32 batch, [file names])."""
    from kerascnn.data import headers, stream

    files = [str(f) for f in image_files(paths)]
    if not files:
        return
    _, shapes, _ = headers.header_pass(files, "stop")
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(int(v) for v in image_size)
    _check_fits(files[0], (batch,) + size + (channels,), 4 * 3,
                f"batches of {batch} images at {size[0]}x{size[1]}x{channels} in float32")
    i = 0
    batches = stream.file_batches(files, shapes, size, channels, pixel_scale, batch).as_numpy_iterator()
    for xb in stream.named_errors(batches, files, batch):
        yield xb, files[i:i + len(xb)]
        i += len(xb)


def load_image_files(paths, image_size, channels: int, pixel_scale: float = 1 / 255):
    """Image files and folders (expanded, sorted) -> (float32 batch ready for the model, file names)."""
    parts = list(iter_image_batches(paths, image_size, channels, pixel_scale))
    if not parts:
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(int(v) for v in image_size)
        return np.zeros((0,) + size + (channels,), np.float32), []
    return np.concatenate([x for x, _ in parts]), sum((f for _, f in parts), [])
