"""Data formats people already have on disk, read offline into ``data.ImageData``:

- the official CIFAR-10 / CIFAR-100 python archives (``cifar-10-python.tar.gz``,
  ``cifar-100-python.tar.gz``) and their extracted folders (``cifar-10-batches-py/``,
  ``cifar-100-python/``, the layout ``keras.datasets`` caches in ``~/.keras/datasets``);
- the ``keras.datasets`` Fashion-MNIST / MNIST IDX cache folder (``train-images-idx3-ubyte.gz`` ...);
- CSV / text manifests (``path,label`` per line, optional header, paths relative to the manifest,
  labels as integers or names);
- TFRecord shards with ``image/encoded`` + ``image/class/label`` (TFDS / Model Garden / TF-slim
  style; ``image/class/text`` when present names the classes), as ``kerascnn shards`` writes them.

The CIFAR pickles are read with ``SafeUnpickler``: ``find_class`` allows only the four globals
a pickled numpy array needs (``numpy...multiarray._reconstruct``, ``numpy.ndarray``,
``numpy.dtype``, ``_codecs.encode``); any other global (``os.system``, ``builtins.eval`` ...)
is refused before it is looked up, so a hostile archive cannot run code. Object arrays are refused.
Nothing here imports TensorFlow except the TFRecord reader/writer (lazily).
"""
from __future__ import annotations

import csv
import gzip
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from kerascnn.data import safe_read
from kerascnn.data.images import check_encoded
from kerascnn.errors import DataError, first_line, tf_cause

TFRECORD_MARKS = (".tfrecord", ".tfrecords", ".tfrec")
MANIFEST_SUFFIXES = (".csv", ".tsv", ".txt")
CIFAR_ARCHIVES = ("cifar-10-python.tar.gz", "cifar-100-python.tar.gz")
PATH_HEADERS = {"path", "file", "filename", "file_name", "filepath", "image", "image_path", "img", "fname"}
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


# --------------------------------------------------------------------------- dispatch
def detect(path: Path) -> str | None:
    """The format of ``--data PATH`` this module reads, or None (npz / class folders: data.py)."""
    name = path.name.lower()
    if not path.exists() and any(ch in str(path) for ch in "*?[") and glob_shards(path):
        return "tfrecord-glob"
    if path.is_dir():
        if (path / "batches.meta").is_file() or ((path / "meta").is_file() and (path / "train").is_file()):
            return "cifar-dir"
        if any((path / f).is_file() or (path / (f + ".gz")).is_file() for f in IDX_FILES[:1]):
            return "idx-dir"
        subdirs = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")]
        if not subdirs and any(_is_tfrecord(p) for p in path.iterdir() if p.is_file()):
            return "tfrecord-dir"
        return None
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        return "cifar-archive"
    if path.suffix.lower() in MANIFEST_SUFFIXES:
        return "manifest"
    if _is_tfrecord(path):
        return "tfrecord"
    return None


def glob_shards(pattern) -> list:
    """The TFRecord files a glob pattern (``shards/train-*``) matches, sorted; [] when any match is not one."""
    import glob

    found = sorted(Path(p) for p in glob.glob(str(pattern)))
    return found if found and all(p.is_file() and _is_tfrecord(p) for p in found) else []


def _is_tfrecord(path: Path) -> bool:
    name = path.name.lower()
    return any(m in name for m in TFRECORD_MARKS) or "-of-" in name


def load(path: Path, kind: str, seed: int):
    """``--data PATH`` of format ``kind`` (see ``detect``) -> ``data.ImageData``."""
    from kerascnn import data

    if kind != "tfrecord-glob":
        _check_readable(path)
    if kind == "cifar-archive":
        parts = read_cifar_archive(path)
    elif kind == "cifar-dir":
        parts = read_cifar_dir(path)
    elif kind == "idx-dir":
        parts = read_idx_dir(path)
    elif kind == "manifest":
        parts = read_manifest(path, seed)
    elif kind in ("tfrecord", "tfrecord-dir", "tfrecord-glob"):
        parts = read_tfrecords(path, seed)
    else:  # pragma: no cover - detect() returns only the kinds above
        raise DataError(f"{path}: unknown format {kind}")
    x_tr, y_tr, x_te, y_te, names = parts
    return data._validated(x_tr, y_tr, x_te, y_te, names, f"{kind}:{path}", path)


def _check_readable(path: Path) -> None:
    import os

    if not os.access(path, os.R_OK):
        raise DataError(f"{path}: cannot read it (permission denied)")


# --------------------------------------------------------------------------- CIFAR (python pickles)
class SafeUnpickler(pickle.Unpickler):
    """Unpickles only plain containers, numbers, strings/bytes and numpy arrays of plain dtypes."""

    ALLOWED = frozenset({
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    })

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused global {module}.{name} (only numpy arrays are allowed)")
        return super().find_class(module, name)


def safe_unpickle(raw: bytes, src: str):
    try:
        obj = SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # noqa: BLE001  (any malformed pickle: UnpicklingError, EOFError, ValueError ...)
        from kerascnn.data import _short

        raise DataError(f"{src}: not a CIFAR python batch ({_short(e)})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{src}: not a CIFAR python batch (a pickled {type(obj).__name__}, expected a dict)")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _cifar_batch(d: dict, src: str, label_key: str):
    x = d.get("data")
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise DataError(f"{src}: 'data' is {got}; expected uint8 (N, 3072) channel-planar 32x32 RGB rows")
    if label_key not in d:
        raise DataError(f"{src}: no '{label_key}' list; found {', '.join(sorted(d))}")
    labels = d[label_key]
    if isinstance(labels, list) and not all(type(v) is int for v in labels):   # checked before numpy walks it:
        raise DataError(f"{src}: '{label_key}' must be a flat list of {len(x)} integers; it holds "  # a shared
                        f"{type(next(v for v in labels if type(v) is not int)).__name__} items")  # nested list
    y = np.asarray(labels)                                                       # would expand without bound
    if y.dtype == object or y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{src}: '{label_key}' must be {len(x)} integer labels; found {y.dtype} {y.shape}")
    return x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), y.astype(np.int64)


def _cifar_names(meta: dict | None, key: str, src: str = "CIFAR meta"):
    if not meta or key not in meta:
        return None
    names = meta[key]
    if not isinstance(names, list) or not all(isinstance(n, (bytes, str)) for n in names):
        raise DataError(f"{src}: '{key}' must be a list of names (strings); found {type(names).__name__} "
                        f"of other items")
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names]


def _assemble_cifar(members: dict, src: str):
    """{member base name: raw bytes} of a CIFAR-10 or CIFAR-100 python folder -> arrays + names."""
    if "batches.meta" in members or any(k.startswith("data_batch_") for k in members):  # CIFAR-10
        train = sorted((k for k in members if k.startswith("data_batch_")), key=lambda k: int(k.rsplit("_", 1)[1]))
        test, label_key, meta_name, names_key = ["test_batch"], "labels", "batches.meta", "label_names"
    else:  # CIFAR-100
        train, test, label_key, meta_name, names_key = ["train"], ["test"], "fine_labels", "meta", "fine_label_names"
    missing = [m for m in train + test if m not in members]
    if not train or missing:
        raise DataError(f"{src}: not a complete CIFAR archive: missing {', '.join(missing) or 'data_batch_1..5'}")
    parts = {}
    for split, names in (("train", train), ("test", test)):
        xs, ys = zip(*(_cifar_batch(safe_unpickle(members[m], f"{src}:{m}"), f"{src}:{m}", label_key) for m in names))
        parts[split] = (np.concatenate(xs), np.concatenate(ys))
    meta = safe_unpickle(members[meta_name], f"{src}:{meta_name}") if meta_name in members else None
    names = _cifar_names(meta, names_key, f"{src}:{meta_name}")
    return parts["train"] + parts["test"] + (names,)


def read_cifar_archive(path: Path):
    """``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz`` read in place (nothing extracted):
    only regular-file members named like the official batches are read, after checking that
    their sizes fit in memory."""
    from kerascnn.analysis import human_bytes
    from kerascnn.guard import available_bytes

    wanted = {"batches.meta", "test_batch", "meta", "train", "test"}
    members = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            infos = [i for i in tar.getmembers() if i.isfile() and
                     (i.name.rsplit("/", 1)[-1] in wanted or i.name.rsplit("/", 1)[-1].startswith("data_batch_"))]
            total = sum(i.size for i in infos)
            if total * 2 > available_bytes():
                raise DataError(f"{path}: its batches hold {human_bytes(total)} but only "
                                f"{human_bytes(available_bytes())} of memory is available")
            for info in infos:
                members[info.name.rsplit("/", 1)[-1]] = tar.extractfile(info).read()
    except (tarfile.TarError, OSError, EOFError, zlib_error()) as e:
        from kerascnn.data import _short

        raise DataError(f"{path}: not a readable tar.gz archive ({_short(e)})") from None
    if not members:
        raise DataError(f"{path}: no CIFAR batches in this archive (expected {' or '.join(CIFAR_ARCHIVES)})")
    return _assemble_cifar(members, str(path))


def zlib_error():
    import zlib

    return zlib.error


def read_cifar_dir(path: Path):
    """An extracted ``cifar-10-batches-py/`` or ``cifar-100-python/`` folder: the batches' sizes
    are checked against the memory first (a sparse 20 GB batch is refused before it is read)."""
    from kerascnn.analysis import human_bytes
    from kerascnn.guard import available_bytes

    wanted = [f for f in sorted(path.iterdir()) if f.name in ("batches.meta", "test_batch", "meta", "train", "test")
              or f.name.startswith("data_batch_")]
    sizes = {f: f.stat().st_size for f in wanted if f.is_file()}
    total, have = sum(sizes.values()), available_bytes()
    if total * 2 > have:
        big = max(sizes, key=sizes.get)
        raise DataError(f"{path}: its batches hold {human_bytes(total)} ({big.name}: {human_bytes(sizes[big])}) but "
                        f"only {human_bytes(have)} of memory is available; refused before reading")
    members = {f.name: safe_read.read_regular(f, limit=1 << 62, what="CIFAR batch") for f in sizes}
    return _assemble_cifar(members, str(path))


# --------------------------------------------------------------------------- IDX (MNIST / Fashion-MNIST cache)
def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (or .gz): the header's dimensions are checked against the memory before the
    body is read, and exactly that many bytes are read (a .gz that expands further is refused)."""
    from kerascnn.analysis import human_bytes
    from kerascnn.guard import available_bytes

    with safe_read.open_regular(path, limit=1 << 62, what="IDX") as src:
        fh = gzip.GzipFile(fileobj=src) if path.suffix == ".gz" else src
        head = fh.read(4)
        if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] != 8:
            raise DataError(f"{path}: not an IDX file of unsigned bytes")
        raw_dims = fh.read(4 * head[3])
        dims = [int.from_bytes(raw_dims[4 * i: 4 * i + 4], "big") for i in range(len(raw_dims) // 4)]
        need = int(np.prod(dims, dtype=object))
        if need * 2 > available_bytes():
            raise DataError(f"{path}: its header declares {'x'.join(f'{d:,}' for d in dims)} = {human_bytes(need)} "
                            f"but only {human_bytes(available_bytes())} of memory is available; refused before "
                            f"reading")
        body = fh.read(need + 1)
    if len(body) != need:
        raise DataError(f"{path}: header says {dims} but the file holds {'more than ' if len(body) > need else ''}"
                        f"{min(len(body), need):,} values")
    return np.frombuffer(body, np.uint8).reshape(dims)


def idx_dims(path: Path, name: str) -> list:
    """The dimensions an IDX file's header declares (its first bytes only; .gz read that far)."""
    f = path / name if (path / name).is_file() else path / (name + ".gz")
    opener = gzip.open if f.suffix == ".gz" else open
    with opener(f, "rb") as fh:
        head = fh.read(4)
        if len(head) < 4 or head[:3] != b"\x00\x00\x08":
            raise DataError(f"{f}: not an IDX file of unsigned bytes")
        raw = fh.read(4 * head[3])
    return [int.from_bytes(raw[4 * i:4 * i + 4], "big") for i in range(head[3])]


def read_idx_dir(path: Path):
    out = []
    for name in IDX_FILES:
        f = path / name if (path / name).is_file() else path / (name + ".gz")
        if not f.is_file():
            raise DataError(f"{path}: missing {name}(.gz); expected the four MNIST IDX files")
        try:
            out.append(_read_idx(f))
        except (OSError, EOFError, zlib_error()) as e:
            from kerascnn.data import _short

            raise DataError(f"{f}: not readable ({_short(e)})") from None
    return tuple(out) + (None,)


# --------------------------------------------------------------------------- manifests
def _manifest_rows(path: Path) -> list:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        from kerascnn.data import _short

        raise DataError(f"{path}: cannot read the manifest ({_short(e)})") from None
    rows = []
    lines = [(i + 1, ln) for i, ln in enumerate(text.splitlines()) if ln.strip() and not ln.lstrip().startswith("#")]
    for lineno, line in lines:
        if "," in line or "\t" in line:
            fields = next(csv.reader([line], delimiter="," if "," in line else "\t"))
        else:
            fields = line.rsplit(None, 1)
        fields = [f.strip() for f in fields]
        if len(fields) < 2 or not fields[0] or not fields[1]:
            raise DataError(f"{path}:{lineno}: expected 'path,label'; found {line[:80]!r}")
        rows.append((lineno, fields[0], fields[1]))
    if rows and rows[0][1].lower() in PATH_HEADERS:
        rows = rows[1:]
    if not rows:
        raise DataError(f"{path}: empty manifest; expected one 'path,label' line per image")
    return rows


def read_manifest(path: Path, seed: int):
    """``path,label`` lines (comma, tab or whitespace separated; a header line is recognised by
    its first field, e.g. ``path,label`` / ``filename,class``) -> seeded 80/20 train/test split
    as for class folders. Integer labels are class indices; names are sorted into indices."""
    from kerascnn import data

    files, y, names = manifest_files(path)
    data.check_labels(path, {"labels": y}, names)     # before any image is decoded
    x = data._decode_stack(path, files)
    x_tr, y_tr, x_te, y_te = data.split_validation(x, y, 0.2, seed)
    return x_tr, y_tr, x_te, y_te, names


def manifest_files(path: Path):
    """A manifest -> (image files, int64 labels, class names or None for integer labels)."""
    files, raw_labels, linenos = [], [], []
    base = path.parent
    for lineno, p, label in _manifest_rows(path):
        f = Path(p) if Path(p).is_absolute() else base / p
        if not f.is_file():
            raise DataError(f"{path}:{lineno}: {p}: no such image file")
        files.append(f)
        raw_labels.append(label)
        linenos.append(lineno)
    names = None
    ints = [_is_int(v) for v in raw_labels]
    if any(ints):   # integer labels: every one must be (1e23, 3.5 or --5 among them is a mistake, not a name)
        for lineno, label, is_int in zip(linenos, raw_labels, ints):
            if not is_int and _looks_numeric(label):
                raise DataError(f"{path}:{lineno}: label {label[:40]!r} is not an integer class index, but the other "
                                f"labels are; labels are class indices 0..K-1 or class names")
            if is_int and abs(int(label)) >= 2 ** 62:
                raise DataError(f"{path}:{lineno}: label {label[:40]} is far beyond any class index; labels are "
                                f"class indices 0..K-1")
    if all(ints):
        y = np.array([int(v) for v in raw_labels], dtype=np.int64)
    else:
        names = sorted(set(raw_labels))
        index = {n: i for i, n in enumerate(names)}
        y = np.array([index[v] for v in raw_labels], dtype=np.int64)
    return files, y, names


def _is_int(v: str) -> bool:
    import re

    return re.fullmatch(r"[+-]?[0-9]+", v) is not None


def _looks_numeric(v: str) -> bool:
    """1e23, 3.5, --5, +-2: made of signs, digits, a point and an exponent (a number, or a typo of one)."""
    import re

    return re.fullmatch(r"[+-]*[0-9]*\.?[0-9]*(?:[eE][+-]?[0-9]+)?", v) is not None and any(c.isdigit() for c in v)


# --------------------------------------------------------------------------- TFRecord
def tfrecord_files(path: Path) -> tuple:
    """(train shard files, test shard files) of ``--data``: one shard, a folder of shards or a glob
    of them, whose names start with train / test|val|validation (otherwise all are training shards)."""
    if not path.exists():
        files = glob_shards(path)
        if not files:
            raise DataError(f"{path}: no TFRecord shards match")
    else:
        files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file() and _is_tfrecord(p))
    test = [f for f in files if f.name.lower().startswith(("test", "val"))]
    train = [f for f in files if f not in test]
    if not train:
        raise DataError(f"{path}: no training shards (only {', '.join(f.name for f in test[:3])})")
    return train, test


def read_tfrecords(path: Path, seed: int):
    from kerascnn import data

    train, test = tfrecord_files(path)
    x_tr, y_tr, names = _read_shards(train)
    if test:
        x_te, y_te, names_te = _read_shards(test)
        names = names or names_te
        x = data._stack(list(x_tr) + list(x_te), [Path(str(path))])
        x_tr, x_te = x[:len(x_tr)], x[len(x_tr):]
    else:
        x = data._stack(list(x_tr), [Path(str(path))])
        x_tr, y_tr, x_te, y_te = data.split_validation(x, y_tr, 0.2, seed)
    return x_tr, y_tr, x_te, y_te, names


def _read_shards(files: list):
    import tensorflow as tf

    spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
            "image/class/label": tf.io.FixedLenFeature([], tf.int64),
            "image/class/text": tf.io.FixedLenFeature([], tf.string, default_value=b"")}
    images, labels, texts = [], [], {}
    safe_read.check_shards(files)      # every record's claimed length, before TensorFlow reads one
    for f in files:
        try:
            for i, rec in enumerate(tf.data.TFRecordDataset(str(f))):
                try:
                    ex = tf.io.parse_single_example(rec, spec)
                    enc = ex["image/encoded"]   # JPEG: the accurate IDCT, PIL's pixels (as the streams decode)
                    check_encoded(enc.numpy(), f"{f}: record {i}")    # no bomb is decoded
                    img = (tf.io.decode_jpeg(enc, dct_method="INTEGER_ACCURATE") if tf.io.is_jpeg(enc)
                           else tf.io.decode_image(enc, expand_animations=False)).numpy()
                except (tf.errors.InvalidArgumentError, ValueError) as e:
                    raise DataError(f"{f}: record {i}: no readable image/encoded + image/class/label "
                                    f"({e.__class__.__name__}: {tf_cause(e)[:70]})") from None
                if img.dtype != np.uint8:
                    img = (img.astype(np.float64) / 257.0).round().astype(np.uint8)
                img = img[..., :3] if img.shape[-1] == 4 else img
                images.append(img[..., 0] if img.shape[-1] == 1 else img)
                label = int(ex["image/class/label"])
                labels.append(label)
                if ex["image/class/text"].numpy():
                    texts[label] = ex["image/class/text"].numpy().decode("utf-8", "replace")
        except tf.errors.DataLossError as e:
            raise DataError(f"{f}: corrupt TFRecord file ({tf_cause(e)[:80]})") from None
        except tf.errors.OpError as e:
            raise DataError(f"{f}: cannot read ({tf_cause(e)[:80]})") from None
    if not images:
        raise DataError(f"{files[0]}: no records")
    names = safe_read.names_from_texts(texts)
    return images, np.array(labels, dtype=np.int64), names


def _bytes_feature(v: bytes):
    import tensorflow as tf

    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))


def _int_feature(v: int):
    import tensorflow as tf

    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)]))


def write_shards(folder: Path, out: Path, shards: int, seed: int = 0) -> dict:
    """Class folder (``train/``/``test/`` aware) -> ``OUT/{train,test}-NNNNN-of-MMMMM.tfrecord``
    with the original file bytes as ``image/encoded`` (no re-encoding) plus ``image/class/label``,
    ``image/class/text``, ``image/format``, ``image/height``, ``image/width``, ``image/filename``.
    Files are dealt to shards in a seeded shuffled order (every shard a mix of classes).
    Every image's header is checked first; written into a staging folder, renamed onto OUT only
    when complete (OUT must not exist, or be empty). Returns {split: images written}."""
    import tensorflow as tf

    from kerascnn import data, fsutil

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        from kerascnn.errors import ConfigError

        raise ConfigError(f"{out}: exists and is not an empty directory; choose a new output folder")
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        names, f_tr, y_tr = data._scan_folder(folder / "train")
        names_te, f_te, y_te = data._scan_folder(folder / "test")
        if names_te != names:
            raise DataError(f"{folder}: train/ and test/ have different class folders")
        splits = {"train": (f_tr, y_tr), "test": (f_te, y_te)}
    else:
        names, files, y = data._scan_folder(folder)
        splits = {"train": (files, y)}
    sizes = {}
    for files, _ in splits.values():
        for f in files:
            sizes[f] = _header(f)
    staging = fsutil.partial_dir(out)
    counts = {}
    try:
        for split, (files, y) in splits.items():
            n = min(shards, len(files))
            order = np.random.default_rng(seed).permutation(len(files))
            writers = [tf.io.TFRecordWriter(str(staging / f"{split}-{i:05d}-of-{n:05d}.tfrecord")) for i in range(n)]
            for j, k in enumerate(order):
                f = files[k]
                (w, h), fmt = sizes[f]
                ex = tf.train.Example(features=tf.train.Features(feature={
                    "image/encoded": _bytes_feature(f.read_bytes()),
                    "image/class/label": _int_feature(y[k]),
                    "image/class/text": _bytes_feature(names[y[k]].encode()),
                    "image/format": _bytes_feature(fmt.encode()),
                    "image/height": _int_feature(h), "image/width": _int_feature(w),
                    "image/filename": _bytes_feature(str(f.relative_to(folder)).encode()),
                }))
                writers[j % n].write(ex.SerializeToString())
            for w in writers:
                w.close()
            counts[split] = len(files)
        fsutil.normal_permissions(staging)
        if out.exists():
            out.rmdir()
        fsutil.commit_dir(staging, out)
    except BaseException:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        raise
    return counts


def _header(f: Path):
    """((width, height), format) from the image header; bad files named in one line."""
    from PIL import UnidentifiedImageError

    from kerascnn import data

    data._regular_file(f)
    try:
        with data._open_header(f) as im:
            data._check_image_header(f, im)
            return im.size, (im.format or "").lower()
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{f}: not a readable image ({e.__class__.__name__}: {first_line(e, 80, '')})") from None
