"""Data: built-in data sets, ``.npz`` files and class folders -> validated arrays -> ``tf.data``.

``load_data`` returns raw, validated images (``ImageData``); ``prepare_images``
resizes, adapts channels (gray <-> RGB) and scales them for a model;
``train_dataset`` batches them in an order that is a function of
``(seed, epoch)`` only, so a resumed run sees exactly the batches an
uninterrupted one would. Every problem is a one-line ``DataError`` naming the
file and what is wrong.
"""
from __future__ import annotations

import contextlib
import os
import warnings
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kerascnn.errors import ConfigError, DataError

BUILTIN = ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
CLASS_NAMES = {
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
}


@dataclass
class ImageData:
    """Validated raw images: (N, H, W, C) uint8 or float32, labels int64 in [0, num_classes)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list
    name: str
    pixel_scale: float = 1.0 / 255.0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])


# --------------------------------------------------------------------------- loading
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
    or one of the formats in ``kerascnn.formats`` (CIFAR archives, IDX, manifests, TFRecord shards).

    ``class_names`` (see ``parse_class_names``) names the classes of any source, replacing the
    data's own names (an ``.npz`` file's ``class_names`` array, folder names, "0".."9")."""
    names = parse_class_names(class_names)
    if data:
        path = Path(data)
        if not path.exists():
            raise DataError(f"{path}: no such file or directory")
        from kerascnn import formats

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


def _short(e: BaseException, limit: int = 90) -> str:
    text = " ".join(str(e).split())
    text = f"{e.__class__.__name__}: {text}" if text else e.__class__.__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _load_npz(path: Path, seed: int) -> ImageData:
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes)")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not a readable .npz file (not a zip archive; save it with numpy.savez)")
    check_npz_headers(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise DataError(f"{path}: holds object (pickled) arrays; only plain numeric arrays are accepted") from None
        raise DataError(f"{path}: not a readable .npz file ({e})") from None
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npz file ({e.__class__.__name__})") from None
    if not {"x_train", "y_train"} <= set(arrays):
        raise DataError(f"{path}: expected arrays {', '.join(NPZ_KEYS)}; found {', '.join(sorted(arrays)) or 'none'}")
    x_tr, y_tr = arrays["x_train"], arrays["y_train"]
    if ("x_test" in arrays) != ("y_test" in arrays):
        have, missing = ("x_test", "y_test") if "x_test" in arrays else ("y_test", "x_test")
        raise DataError(f"{path}: has {have} but no {missing}; found {', '.join(sorted(arrays))}")
    if "x_test" in arrays and "y_test" in arrays:
        x_te, y_te = arrays["x_test"], arrays["y_test"]
    else:
        _check_pair(path, "x_train", x_tr, "y_train", y_tr)
        y_tr = _labels(path, "y_train", y_tr)
        check_labels(path, {"y_train": y_tr}, _class_names(path, arrays))
        x_tr, y_tr, x_te, y_te = split_validation(_as_nhwc(path, "x_train", x_tr), y_tr, 0.2, seed)
    names = _class_names(path, arrays)
    return _validated(x_tr, y_tr, x_te, y_te, names, f"file:{path}", path)


def _class_names(path, arrays) -> list | None:
    if "class_names" not in arrays:
        return None
    names = arrays["class_names"]
    if names.ndim != 1:
        raise DataError(f"{path}: class_names has shape {names.shape}; expected one name per class (K,)")
    return [str(s)[:200] for s in names.tolist()]


def _npz_members(path: Path) -> dict:
    """{array name: (shape, dtype)} read from each ``.npy`` member's header, without decompressing
    the data (only the first few hundred bytes of each member are inflated)."""
    out = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    out[info.filename] = ((info.file_size,), np.dtype(np.uint8))
                    continue
                with zf.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
                    elif version == (2, 0):
                        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
                    else:
                        raise ValueError(f"unsupported .npy version {version}")
                out[info.filename[:-4]] = (tuple(int(v) for v in shape), dtype)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError, NotImplementedError) as e:
        raise DataError(f"{path}: not a readable .npz file ({_short(e)})") from None
    return out


def check_npz_headers(path: Path) -> dict:
    """Refuse, from the member headers alone, an ``.npz`` whose arrays would not fit in memory
    once decompressed (a small file can expand a thousandfold) or whose image/label arrays
    are 0-d scalars. Returns {name: (shape, dtype)}."""
    from kerascnn.guard import available_bytes
    from kerascnn.analysis import human_bytes

    members = _npz_members(path)
    total = 0
    for name, (shape, dtype) in members.items():
        if name in NPZ_KEYS and shape == ():
            raise DataError(f"{path}: {name[:40]} is a 0-d array (a single value); expected "
                            f"{'images (N,H,W) or (N,H,W,C)' if name.startswith('x') else 'one label per image (N,)'}")
        if dtype.hasobject:
            raise DataError(f"{path}: holds object (pickled) arrays; only plain numeric arrays are accepted")
        total += int(np.prod(shape, dtype=object)) * dtype.itemsize
    have = available_bytes()
    if total > have:
        raise DataError(f"{path}: its arrays expand to {human_bytes(total)} ({path.stat().st_size:,} bytes on disk) "
                        f"but only {human_bytes(have)} of memory is available; refused before decompressing")
    return members


def _as_nhwc(src, key, x) -> np.ndarray:
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise DataError(f"{src}: {key} has dtype {x.dtype}; expected uint8 or float images")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4) or min(x.shape[1:3]) < 1:
        raise DataError(f"{src}: {key} has shape {x.shape}; expected images (N,H,W) or (N,H,W,C) with C 1 or 3")
    if x.shape[-1] == 4:
        x = x[..., :3]
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise DataError(f"{src}: {key} contains NaN or infinite values")
    if x.ndim == 0:
        raise DataError(f"{src}: {key} is a 0-d array (a single value); expected images (N,H,W) or (N,H,W,C)")
    if np.issubdtype(x.dtype, np.integer):
        if x.size and (x.min() < 0 or x.max() > 255):
            raise DataError(f"{src}: {key} has integer pixel values outside 0..255")
        x = x.astype(np.uint8)
    else:
        x = x.astype(np.float32)
    return x


def _labels(src, key, y) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{src}: {key} has shape {y.shape}; expected one integer label per image (N,)")
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise DataError(f"{src}: {key} holds non-integer labels")
        if y.size and float(np.max(np.abs(y))) >= 2.0 ** 53:
            raise DataError(f"{src}: {key} holds a label of {float(np.max(np.abs(y))):.3g}; labels are class "
                            f"indices 0..K-1")
    elif not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{src}: {key} has dtype {y.dtype}; expected integer class labels")
    return y.astype(np.int64)


def check_labels(src, ys: dict, names) -> int:
    """The number of classes K: labels must be 0..K-1 with every class present (dense), or indices
    into the given class names. Checked with O(N) work whatever the label values (a label of 1e12
    never turns into a list of 1e12 names)."""
    present = [y for y in ys.values() if y.size]
    low = min(int(y.min()) for y in present)
    high = max(int(y.max()) for y in present)
    if low < 0:
        key = next(k for k, y in ys.items() if y.size and int(y.min()) == low)
        raise DataError(f"{src}: {key} has label {low}; labels are class indices 0..K-1")
    if names:
        k = len(names)
        if high >= k:
            key = next(k_ for k_, y in ys.items() if y.size and int(y.max()) == high)
            raise DataError(f"{src}: {key} has label {high}, outside [0, {k}) for the {k} class names")
        return k
    used = np.unique(np.concatenate([np.unique(y) for y in present]))
    if high + 1 != len(used):
        missing = next(i for i, v in enumerate(used) if i != v) if high + 1 > len(used) else None
        raise DataError(f"{src}: labels are not dense: {len(used)} distinct labels but the largest is {high:,} "
                        f"(label {missing} is never used); relabel them 0..{len(used) - 1} or add a class_names "
                        f"array with one name per label")
    return high + 1


def _check_pair(src, xk, x, yk, y):
    if len(x) != len(y):
        raise DataError(f"{src}: {xk} has {len(x)} images but {yk} has {len(y)} labels")
    if len(x) == 0:
        raise DataError(f"{src}: {xk} is empty")


def _validated(x_tr, y_tr, x_te, y_te, names, name, src) -> ImageData:
    _check_pair(src, "x_train", x_tr, "y_train", y_tr)
    _check_pair(src, "x_test", x_te, "y_test", y_te)
    x_tr, x_te = _as_nhwc(src, "x_train", x_tr), _as_nhwc(src, "x_test", x_te)
    y_tr, y_te = _labels(src, "y_train", y_tr), _labels(src, "y_test", y_te)
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise DataError(f"{src}: x_train images are {x_tr.shape[1:]} but x_test images are {x_te.shape[1:]}")
    k = check_labels(src, {"y_train": y_tr, "y_test": y_te}, names)
    if len(np.unique(y_tr)) < 2:
        raise DataError(f"{src}: y_train has fewer than two classes; a classifier needs at least two")
    names = names or [str(i) for i in range(k)]
    scale = _pixel_scale(src, {"x_train": x_tr, "x_test": x_te})
    return ImageData(x_tr, y_tr, x_te, y_te, list(names), name, scale)


def _unit_range(x) -> bool:
    """True for float pixels already in [0, 1]; False for 0..255 (uint8, or float above 1)."""
    return x.dtype == np.float32 and float(x.max()) <= 1.0


def _pixel_scale(src, splits: dict) -> float:
    """One pixel scale per data set: every split in [0, 1], or every split 0..255."""
    kinds = {key: _unit_range(x) for key, x in splits.items() if x.size}
    if len(set(kinds.values())) > 1:
        unit = [k for k, v in kinds.items() if v]
        raw = [k for k, v in kinds.items() if not v]
        raise DataError(f"{src}: {', '.join(unit)} pixels are in [0, 1] but {', '.join(raw)} pixels go up to "
                        f"{float(max(splits[k].max() for k in raw)):g} (0..255); use one scale for every split")
    return 1.0 if kinds.get("x_train", False) else 1.0 / 255.0


MAX_IMAGE_PIXELS = 89_478_485  # PIL's own decompression-bomb limit (~ 9,459 x 9,459): no classifier input


def _check_image_header(path: Path, im) -> None:
    """Refuse, from the header (PIL's open reads only that), an image too large to decode."""
    from kerascnn.analysis import human_bytes
    from kerascnn.guard import available_bytes

    w, h = im.size
    bands = max(1, len(im.getbands()))
    if w * h > MAX_IMAGE_PIXELS or w * h * bands * 2 > available_bytes():
        raise DataError(f"{path}: {w:,}x{h:,} pixels ({human_bytes(w * h * bands)} decoded) is far larger than any "
                        f"classifier input (limit {MAX_IMAGE_PIXELS:,} pixels); refused before decoding "
                        f"(a decompression bomb?)")


@contextlib.contextmanager
def _open_header(path: Path):
    """``Image.open`` (reads the header only) with PIL's own bomb check handed to
    ``_check_image_header``, which names the file and the size in one line."""
    from PIL import Image

    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        im = Image.open(path)
    finally:
        Image.MAX_IMAGE_PIXELS = previous
    with im:
        yield im


def _regular_file(path: Path, what: str = "image", allow_empty: bool = False) -> None:
    import stat

    try:
        st = path.stat()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"{path}: not a regular file (a device, pipe or socket); expected an {what} file")
    if st.st_size == 0 and not allow_empty:
        raise DataError(f"{path}: empty {what} file (0 bytes)")


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    _regular_file(path)
    try:
        with _open_header(path) as im:
            _check_image_header(path, im)
            return _decode(im)
    except Image.DecompressionBombError as e:
        raise DataError(f"{path}: refused before decoding, a decompression bomb ({str(e)[:80]})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: not a readable image ({e.__class__.__name__}: {str(e)[:80]})") from None


def _decode(im) -> np.ndarray:
    """An opened PIL image -> uint8 (H, W) gray or (H, W, 3) RGB."""
    im.load()
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit / 32-bit gray -> 0..255
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        return np.clip(np.round(a * (255.0 / top)), 0, 255).astype(np.uint8)
    if im.mode in ("1", "LA"):
        im = im.convert("L")
    elif im.mode not in ("L", "RGB"):  # P, RGBA, CMYK, YCbCr ... -> RGB (alpha dropped)
        im = im.convert("RGBA").convert("RGB") if im.mode in ("P", "PA", "RGBA") else im.convert("RGB")
    return np.asarray(im, dtype=np.uint8)


class DataWarning(UserWarning):
    """Something in the data was skipped; training goes on."""


class echo_warnings:  # noqa: N801  (used as a context manager)
    """``with echo_warnings(click.echo): load_data(...)`` shows each ``DataWarning`` as one
    ``warning: ...`` line through ``echo`` (stderr) instead of Python's two-line warning format."""

    def __init__(self, echo):
        self.echo = echo

    def __enter__(self):
        self._ctx = warnings.catch_warnings(record=True)
        self._caught = self._ctx.__enter__()
        warnings.simplefilter("always", DataWarning)
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
        for w in self._caught:
            if issubclass(w.category, DataWarning):
                self.echo(f"warning: {w.message}", err=True)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return False


def _warn_skipped(skipped: list) -> None:
    if skipped:
        more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        warnings.warn(DataWarning(f"skipped {len(skipped)} non-image file(s) in class folders: "
                                  f"{', '.join(map(str, skipped[:3]))}{more}"), stacklevel=3)


def _scan_folder(root: Path) -> tuple:
    """root/CLASS/**/image files -> (sorted class names, files, labels); non-images skipped with a warning."""
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class sub-folders; expected one sub-folder of images per class")
    files, labels, skipped = [], [], []
    for i, cls in enumerate(classes):
        images = []
        for f in sorted(cls.rglob("*")):
            if not f.is_file() or f.name.startswith("."):
                continue
            (images if f.suffix.lower() in IMAGE_EXTENSIONS else skipped).append(f)
        if not images:
            _warn_skipped(skipped)
            raise DataError(f"{cls}: empty class folder (no {'/'.join(IMAGE_EXTENSIONS)} images)")
        files += images
        labels += [i] * len(images)
    _warn_skipped(skipped)
    if len(classes) < 2:
        raise DataError(f"{root}: only one class folder ({classes[0].name}); a classifier needs at least two")
    return [c.name for c in classes], files, np.array(labels, dtype=np.int64)


def _stack(images: list, files: list, note: bool = True) -> np.ndarray:
    """Images of mixed modes and sizes -> one uint8 (N, H, W, C) array at the most common size and
    channel count (gray <-> RGB by luminance / repetition, bilinear resize); one note line says
    how many were converted."""
    channels = Counter(3 if im.ndim == 3 else 1 for im in images).most_common(1)[0][0]
    size = Counter(im.shape[:2] for im in images).most_common(1)[0][0]
    _check_fits(files[0].parent if files else "images", (len(images),) + size + (channels,), 1,
                f"{len(images):,} images at {size[0]}x{size[1]}x{channels}")
    out = np.empty((len(images),) + size + (channels,), dtype=np.uint8)
    converted = resized = 0
    for j, im in enumerate(images):
        converted += (im.shape[-1] if im.ndim == 3 else 1) != channels
        resized += im.shape[:2] != size
        out[j] = _conform(im, size, channels)
    if note and (converted or resized):
        mode = "gray" if channels == 1 else "RGB"
        warnings.warn(DataWarning(f"{len(images)} images of mixed modes/sizes: {converted} converted to {mode}, "
                                  f"{resized} resized to {size[0]}x{size[1]} (the most common)"), stacklevel=2)
    return out


def _conform(im: np.ndarray, size: tuple, channels: int) -> np.ndarray:
    """One decoded image -> uint8 (h, w, channels) at ``size``: gray <-> RGB by repetition /
    luminance, PIL bilinear resize (the conversion ``_stack`` and the streaming path share)."""
    im = im[..., None] if im.ndim == 2 else im
    if im.shape[-1] != channels:
        im = (np.repeat(im, 3, axis=-1) if channels == 3
              else np.clip(np.round(im @ np.array([0.299, 0.587, 0.114])), 0, 255).astype(np.uint8)[..., None])
    if im.shape[:2] != tuple(size):
        from PIL import Image

        pil = Image.fromarray(np.ascontiguousarray(im[..., 0] if channels == 1 else im).astype(np.uint8),
                              "L" if channels == 1 else "RGB")
        im = np.asarray(pil.resize((size[1], size[0]), Image.BILINEAR))
        im = im[..., None] if im.ndim == 2 else im
    return im


def _check_fits(src, shape, itemsize: int, what: str, hint: str = "") -> None:
    """Refuse an array of ``shape`` that would not fit in the available memory, before allocating it."""
    from kerascnn.analysis import human_bytes
    from kerascnn.guard import available_bytes

    need = int(np.prod(shape, dtype=object)) * itemsize
    have = available_bytes()
    if need > have:
        raise DataError(f"{src}: {what} need {human_bytes(need)} but only {human_bytes(have)} of memory "
                        f"is available{hint}")


def _check_headers(root: Path, files: list) -> None:
    """Sum the decoded size of every image from its header (nothing decoded) and refuse a folder
    that would not fit in memory, or any single image that is a decompression bomb."""
    total = 0
    for f in files:
        _regular_file(f)
        try:
            with _open_header(f) as im:
                _check_image_header(f, im)
                total += im.size[0] * im.size[1] * (1 if len(im.getbands()) == 1 else 3)
        except DataError:
            raise
        except Exception:  # unreadable: _read_image reports it with its own message
            continue
    _check_fits(root, (total,), 1, f"{len(files):,} images decoded")


def _load_folder(root: Path, seed: int) -> ImageData:
    if (root / "train").is_dir() and (root / "test").is_dir():
        names, f_tr, y_tr = _scan_folder(root / "train")
        names_te, f_te, y_te = _scan_folder(root / "test")
        if names_te != names:
            raise DataError(f"{root}: train/ and test/ have different class folders")
        _check_headers(root, f_tr + f_te)
        imgs = [_read_image(f) for f in f_tr + f_te]
        x = _stack(imgs, f_tr + f_te)
        x_tr, x_te = x[:len(f_tr)], x[len(f_tr):]
    else:
        names, files, y = _scan_folder(root)
        _check_headers(root, files)
        x = _stack([_read_image(f) for f in files], files)
        x_tr, y_tr, x_te, y_te = split_validation(x, y, 0.2, seed)
    return _validated(x_tr, y_tr, x_te, y_te, names, f"dir:{root}", root)


def load_image_files(paths, image_size, channels: int, pixel_scale: float = 1 / 255):
    """Image files and folders (expanded, sorted) -> (float32 batch ready for the model, file names)."""
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise DataError(f"{p}: no image files")
            files += found
        elif p.exists():
            _regular_file(p)
            files.append(p)
        else:
            raise DataError(f"{p}: no such file or directory")
    raw = [_read_image(f) for f in files]
    batch = np.concatenate([prepare_images(_stack([im], [f], note=False), image_size, channels, pixel_scale)
                            for im, f in zip(raw, files)])
    return batch, [str(f) for f in files]


# --------------------------------------------------------------------------- preparing
def prepare_images(x: np.ndarray, image_size, channels: int, pixel_scale: float, chunk: int = 4096) -> np.ndarray:
    """Resize (bilinear, antialiased when shrinking), adapt channels (gray <-> RGB, luminance for
    RGB -> gray) and scale: float32 (N, H, W, channels). Works in chunks to bound memory; the
    cheaper side of the channel change runs through the resize (gray before RGB expansion)."""
    x = x[..., None] if x.ndim == 3 else x
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(int(v) for v in image_size)
    _check_fits(f"image size {h}x{w}", (len(x), h, w, channels), 4,
                f"{len(x):,} images at {h}x{w}x{channels} in float32", "; use a smaller --image-size (or fewer images)")
    out = np.empty((len(x), h, w, channels), dtype=np.float32)
    scale = np.float32(pixel_scale)
    for i in range(0, len(x), chunk):
        part = x[i:i + chunk].astype(np.float32)
        if part.shape[-1] != channels and channels == 1:  # RGB -> gray before resizing
            part = (part[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
        if part.shape[1:3] != (h, w):
            import tensorflow as tf

            part = tf.image.resize(part, (h, w), method="bilinear",
                                   antialias=bool(part.shape[1] > h or part.shape[2] > w)).numpy()
        part *= scale
        if part.shape[-1] != channels:  # gray -> RGB after resizing
            out[i:i + chunk] = part[..., :1]
        else:
            out[i:i + chunk] = part
    return out


def split_validation(x, y, val_split: float, seed: int):
    """Seeded split of ``val_split`` of the samples, stratified when every class has two or more."""
    if not 0 <= val_split < 1:
        raise ConfigError(f"--val-split must be in [0, 1); received {val_split}")
    n = len(x)
    n_val = int(round(n * val_split))
    if n_val == 0:
        return x, y, x[:0], y[:0]
    if n - n_val < 1:
        raise DataError(f"only {n} training images: nothing left after a {val_split} validation split")
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y)
    present = counts[counts > 0]
    stratify = y if present.min() >= 2 and min(n_val, n - n_val) >= len(present) else None
    idx_tr, idx_val = train_test_split(np.arange(n), test_size=n_val, random_state=seed, stratify=stratify)
    idx_tr.sort()
    idx_val.sort()
    return x[idx_tr], y[idx_tr], x[idx_val], y[idx_val]


def epoch_order(n: int, seed: int, epoch):
    """The sample order of one epoch: a stateless shuffle keyed by (seed, epoch) only, so a
    resumed run sees exactly the order an uninterrupted one would. Works eagerly (returns a
    tensor; ``.numpy()`` for an array) and inside ``tf.data`` / ``tf.function`` graphs."""
    import tensorflow as tf

    key = tf.stack([tf.constant(int(seed), tf.int64), tf.cast(epoch, tf.int64)])
    return tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=key)


def train_dataset(x, y, batch_size: int, seed: int, first_epoch: int, epochs: int, augment: bool = False):
    """Epochs ``first_epoch`` .. ``epochs - 1`` as ONE stream of full (float32 images, int64 labels)
    batches: epoch e is ``epoch_order(n, seed, e)`` cut into ``n // batch_size`` batches (the
    remainder is dropped, as every replica needs a full share).

    The images are turned into tensors once and each batch is gathered by index, so nothing is
    copied or rebuilt between epochs and prefetching runs across epoch boundaries (rebuilding a
    ``from_tensor_slices`` pipeline per epoch cost ~100 ms, 20 % of a LeNet-5 epoch of 100 steps).

    ``augment`` adds a random pad-and-crop (1/8 of the side, reflected borders) and a horizontal
    flip per image, drawn with stateless ops from (seed, epoch, batch index): deterministic, so a
    resumed run sees exactly the augmented batches an uninterrupted one would.
    """
    import tensorflow as tf

    n = len(x)
    steps = n // batch_size
    if steps < 1:
        raise ConfigError(f"batch size {batch_size} is larger than the {n} training images")
    images = tf.constant(np.ascontiguousarray(x, dtype=np.float32))
    labels = tf.constant(np.asarray(y, dtype=np.int64))
    augmenter = _augmenter(x.shape[1:], seed) if augment else None

    def epoch_batches(epoch):
        idx = tf.reshape(epoch_order(n, seed, epoch)[:steps * batch_size], [steps, batch_size])
        return tf.data.Dataset.from_tensor_slices((tf.fill([steps], epoch), tf.range(steps, dtype=tf.int64), idx))

    def gather(epoch, i, idx):
        xb, yb = tf.gather(images, idx), tf.gather(labels, idx)
        return (augmenter(epoch, i, xb), yb) if augmenter else (xb, yb)

    ds = tf.data.Dataset.range(first_epoch, epochs).flat_map(epoch_batches)
    return ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


def _augmenter(shape, seed: int):
    """Batched, vectorised pad-and-crop + horizontal flip with stateless random numbers
    that are a function of (seed, epoch, batch index) only."""
    import tensorflow as tf

    h, w, _ = shape
    pad_h, pad_w = max(1, h // 8), max(1, w // 8)
    mode = "REFLECT" if pad_h < h and pad_w < w else "SYMMETRIC"

    def fn(epoch, i, xb):
        key = tf.stack([tf.constant(int(seed) % (2 ** 31), tf.int64) * 100_003 + epoch, i])
        n = tf.shape(xb)[0]
        padded = tf.pad(xb, [[0, 0], [pad_h, pad_h], [pad_w, pad_w], [0, 0]], mode=mode)
        oy = tf.random.stateless_uniform([n], key, 0, 2 * pad_h + 1, dtype=tf.int32)
        ox = tf.random.stateless_uniform([n], key + [0, 1 << 40], 0, 2 * pad_w + 1, dtype=tf.int32)
        rows = oy[:, None] + tf.range(h)[None, :]                                  # (n, h)
        cols = ox[:, None] + tf.range(w)[None, :]                                  # (n, w)
        xb = tf.gather(padded, rows, axis=1, batch_dims=1)                         # (n, h, W+2p, c)
        xb = tf.gather(xb, cols, axis=2, batch_dims=1)                             # (n, h, w, c)
        flip = tf.random.stateless_uniform([n], key + [0, 2 << 40]) < 0.5
        return tf.where(flip[:, None, None, None], tf.reverse(xb, axis=[2]), xb)

    return fn


def eval_dataset(x, y, batch_size: int):
    """Batches in the given order (no shuffle, no augmentation), prefetched."""
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).prefetch(tf.data.AUTOTUNE)
