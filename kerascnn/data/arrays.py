"""Arrays: ``ImageData``, the checks every source's arrays pass (shape, dtype, labels, pixel
scale, fits in memory) and ``.npz`` files (member headers read before anything is decompressed)."""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kerascnn.data.splits import split_validation
from kerascnn.errors import DataError

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


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


def _short(e: BaseException, limit: int = 90) -> str:
    text = " ".join(str(e).split())
    text = f"{e.__class__.__name__}: {text}" if text else e.__class__.__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _check_fits(src, shape, itemsize: int, what: str, hint: str = "") -> None:
    """Refuse an array of ``shape`` that would not fit in the available memory, before allocating it."""
    from kerascnn.analysis import human_bytes
    from kerascnn.guard import available_bytes

    need = int(np.prod(shape, dtype=object)) * itemsize
    have = available_bytes()
    if need > have:
        raise DataError(f"{src}: {what} need {human_bytes(need)} but only {human_bytes(have)} of memory "
                        f"is available{hint}")


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
    from kerascnn.data.safe_read import open_regular

    out = {}
    try:   # the descriptor that is checked is the one read: a FIFO would block the zip reader forever
        with open_regular(path, limit=1 << 62, what=".npz") as raw, zipfile.ZipFile(raw) as zf:
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
    from kerascnn.analysis import human_bytes
    from kerascnn.guard import available_bytes

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
