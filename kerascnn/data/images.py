"""Image files and class folders: safe header reads (bomb checks), PIL decode of every mode to
uint8 gray / RGB, why an image cannot be used (``diagnose_image``, for the streams' guards),
folder scans, stacking mixed sizes and modes."""
from __future__ import annotations

import contextlib
import os
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from kerascnn.data.arrays import _check_fits
from kerascnn.data.safe_read import MAX_IMAGE_PIXELS, image_pixels, open_regular, read_regular
from kerascnn.errors import DataError, first_line

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def _check_image_header(path: Path, im, have: int | None = None) -> None:
    """Refuse, from the header (PIL's open reads only that), an image too large to decode.
    ``have``: the available memory, when the caller checks many files (read once, not per file)."""
    from kerascnn.analysis import human_bytes
    from kerascnn.guard import available_bytes

    w, h = im.size
    bands = max(1, len(im.getbands()))
    if w * h > MAX_IMAGE_PIXELS or w * h * bands * 2 > (available_bytes() if have is None else have):
        raise DataError(f"{path}: {w:,}x{h:,} pixels ({human_bytes(w * h * bands)} decoded) is far larger than any "
                        f"classifier input (limit {MAX_IMAGE_PIXELS:,} pixels); refused before decoding "
                        f"(a decompression bomb?)")


@contextlib.contextmanager
def _open_header(path: Path):
    """``Image.open`` (reads the header only) with PIL's own bomb check handed to
    ``_check_image_header``, which names the file and the size in one line. A path is opened only
    as a regular file of bounded size (``safe_read.open_regular``: no FIFO, device or /dev/zero
    link, checked on the opened file); a file object is read as it is."""
    from PIL import Image

    fh = open_regular(path) if isinstance(path, (str, os.PathLike)) else contextlib.nullcontext(path)
    with fh as src:
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            im = Image.open(src)
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


def _read_image(path: Path, have: int | None = None, raw: bytes | None = None) -> np.ndarray:
    """One image file (or its bytes ``raw``, already read) -> uint8 (H, W) gray or (H, W, 3) RGB.
    ``have``: the available memory for the bomb check, when the caller reads many files (read
    once per pass, not per file)."""
    import io

    from PIL import Image, UnidentifiedImageError

    if raw is None:
        _regular_file(path)
    try:
        with _open_header(path if raw is None else io.BytesIO(raw)) as im:
            _check_image_header(path, im, have)
            return _decode(im)
    except Image.DecompressionBombError as e:
        raise DataError(f"{path}: refused before decoding, a decompression bomb ({first_line(e, 80, '')})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: not a readable image ({e.__class__.__name__}: {first_line(e, 80, '')})") from None


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


# --------------------------------------------------------------------------- bad items at decode time
def diagnose_image(data: bytes, name: str) -> str:
    """Why ``data`` (an encoded image) cannot be used: ``"NAME: reason"`` (PIL's header check and
    decode, as the scan would say); a generic reason when PIL reads it but TensorFlow did not."""
    import io

    if image_pixels(data) > MAX_IMAGE_PIXELS:      # e.g. a GIF whose frames outgrow its screen
        return (f"{name}: its frames claim {image_pixels(data):,} pixels (limit {MAX_IMAGE_PIXELS:,}); refused "
                f"before decoding (a decompression bomb?)")
    try:
        with _open_header(io.BytesIO(data)) as im:
            _check_image_header(Path(name), im)
            _decode(im)
    except DataError as e:
        return str(e)
    except Exception as e:  # noqa: BLE001  (PIL raises many kinds for a corrupt body)
        from PIL import UnidentifiedImageError

        if isinstance(e, UnidentifiedImageError):
            return f"{name}: not an image (Unknown image file format)"
        return f"{name}: not a readable image ({e.__class__.__name__}: {first_line(e, 80, '')})"
    return f"{name}: TensorFlow could not decode it"


def check_encoded(data: bytes, name: str) -> None:
    """Refuse (one line naming ``name``) an encoded image whose header claims more than
    ``MAX_IMAGE_PIXELS``, before anything decodes it (PIL reads the header only)."""
    import io

    try:
        with _open_header(io.BytesIO(data)) as im:
            _check_image_header(Path(name), im)
    except DataError:
        raise
    except Exception:  # noqa: BLE001  (not an image PIL knows: the decoder says what is wrong)
        return


def diagnose_file(path) -> str:
    try:
        data = read_regular(path)
    except DataError as e:
        return str(e)
    return diagnose_image(data, str(path))


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


def walk_files(root: Path) -> list:
    """Every file under ``root`` (symbolic links to files too; symbolically linked folders are not
    entered), as ``sorted(root.rglob("*"))`` filtered by ``is_file()`` gives them -- sorted by path
    components -- but from ``os.scandir`` (file types from the directory entries: no stat per
    file; 20x faster on 25,000 files)."""
    return [Path(p) for p in _walk(root)]


def _walk(root, names: bool = False) -> list:
    """``walk_files`` as path strings (no ``Path`` objects: a third of the listing's time);
    ``names``: (file name, path) pairs."""
    import os

    found, stack = [], [(str(root), ())]
    while stack:
        folder, parts = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except PermissionError:
            continue
        for e in entries:
            try:
                is_dir = e.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                if not e.is_symlink():
                    stack.append((e.path, parts + (e.name,)))
            elif e.is_file():
                found.append((parts + (e.name,), e.path))
    found.sort()
    return [(parts[-1], p) for parts, p in found] if names else [p for _, p in found]


def count_image_files(root: Path) -> int:
    """How many files under ``root`` have an image extension (``walk_files``'s folders; nothing
    sorted, no path objects: what ``--stream auto`` needs, at the cost of reading the directories)."""
    import os

    n, stack = 0, [str(root)]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for e in it:
                    try:
                        if e.is_dir() and not e.is_symlink():
                            stack.append(e.path)
                        elif os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS and e.is_file():
                            n += 1
                    except OSError:
                        pass
        except PermissionError:
            pass
    return n


def _scan_folder(root: Path) -> tuple:
    """root/CLASS/**/image files -> (sorted class names, files, labels); non-images skipped with a warning."""
    names, files, labels = _scan_names(root)
    return names, [Path(f) for f in files], labels


def _scan_names(root: Path) -> tuple:
    """``_scan_folder`` with the files as path strings."""
    import os

    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class sub-folders; expected one sub-folder of images per class")
    files, labels, skipped = [], [], []
    for i, cls in enumerate(classes):
        images = []
        for name, f in _walk(cls, names=True):
            if name.startswith("."):
                continue
            (images if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS else skipped).append(f)
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


def _check_headers(root: Path, files: list) -> None:
    """Sum the decoded size of every image from its header (nothing decoded) and refuse a folder
    that would not fit in memory (twice: the decoded images and their stacked copy), or any
    single image that is a decompression bomb."""
    from kerascnn.guard import available_bytes

    total, have = 0, available_bytes()
    for f in files:
        _regular_file(f)
        try:
            with _open_header(f) as im:
                _check_image_header(f, im, have)
                total += im.size[0] * im.size[1] * (1 if len(im.getbands()) == 1 else 3)
        except DataError:
            raise
        except Exception:  # unreadable: _read_image reports it with its own message
            continue
    # decoded one by one, then stacked into one array: twice the decoded size at the peak
    _check_fits(root, (2 * total,), 1, f"{len(files):,} images decoded and stacked in memory",
                "; stream them from disk instead (--stream on)")


def image_files(paths) -> list:
    """Image files and folders (folders expanded, sorted) -> the list of files, nothing decoded."""
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            found = [f for f in walk_files(p) if f.suffix.lower() in IMAGE_EXTENSIONS]
            if not found:
                raise DataError(f"{p}: no image files")
            files += found
        elif p.exists():
            _regular_file(p)
            files.append(p)
        else:
            raise DataError(f"{p}: no such file or directory")
    return files
