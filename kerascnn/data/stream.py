"""Streaming from disk: class folders and manifests too big to decode into memory.

``scan`` lists the files (``data._scan_folder`` / a manifest), runs one quick header pass (PIL's
lazy open: size, mode, readable; nothing decoded) that names each bad file, and returns a
``FileImages`` per split: the file list, labels, the common raw size (the most frequent, as the
in-memory path picks) and the model's input size. ``stream_dataset`` then decodes, converts and
resizes images in parallel with ``tf.data`` (the same PIL decode + conversion as the in-memory
path, through ``tf.numpy_function``), in the order ``data.epoch_order(n, seed, e)`` over file
indices, so a resumed run sees exactly the batches an uninterrupted one would.

``choose`` decides in-memory vs streaming from the size the prepared float32 images would take
(N*H*W*C*4) against half the available memory (``--stream auto``; ``guard.available_bytes``,
which honours a memory cgroup), or as told (``on``/``off``).

JPEG/PNG files already at the common size are decoded by TensorFlow (without the GIL; RGB -> gray
by the same luminance in the graph); the others through PIL. Under MultiWorkerMirroredStrategy
``distribute_train`` gives each worker only its slice of every global batch (``worker_share``,
by file index, before decoding), so the workers together see exactly one process's batches.

TFRecord shards (``is_tfrecord``: one, a folder, or a glob) go through the same entry points
(``scan``, ``choose``, ``stream_dataset``, ``eval_dataset``), which hand them to ``records``.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kerascnn.errors import ConfigError, DataError


@dataclass
class FileImages:
    """Images on disk: decoded on demand to float32 (H, W, channels) at the model's input size."""

    files: list                  # str paths
    raw_size: tuple              # (h, w) every image is first brought to (the most common size)
    raw_channels: int            # 1 or 3 (the most common)
    size: tuple = (0, 0)         # model input (h, w)
    channels: int = 1            # model input channels
    pixel_scale: float = 1.0 / 255.0
    bad: list = field(default_factory=list)   # "path: reason" lines skipped by --bad-files skip
    native: list = field(default_factory=list)  # per file: JPEG/PNG already L/RGB at raw size (decoded by TF)
    cache_file: str | None = None  # --cache disk: float32 (N, h, w, channels) .npy of the decoded images

    def __len__(self) -> int:
        return len(self.files)

    @property
    def shape(self) -> tuple:
        return (len(self.files),) + tuple(self.raw_size) + (self.raw_channels,)

    def subset(self, idx) -> FileImages:
        import dataclasses

        native = [self.native[i] for i in idx] if self.native else []
        return dataclasses.replace(self, files=[self.files[i] for i in idx], bad=[], native=native)

    def decoded_bytes(self) -> int:
        return len(self.files) * self.size[0] * self.size[1] * self.channels * 4

    def load(self, i: int) -> np.ndarray:
        """File ``i`` -> float32 (raw_h, raw_w, C') where C' = channels when going RGB -> gray, else raw."""
        from kerascnn import data as D

        im = D._read_image(Path(self.files[i]))
        x = D._conform(im, self.raw_size, self.raw_channels).astype(np.float32)
        if x.shape[-1] != self.channels and self.channels == 1:  # RGB -> gray before resizing (as prepare_images)
            x = (x[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
        return x


def header_pass(files: list, policy: str) -> tuple:
    """(kept indices, [(h, w, channels)], bad "path: reason" lines). ``policy`` stop: the first bad
    file is a one-line DataError; skip: bad files are counted and listed."""
    from kerascnn import data as D
    from kerascnn.guard import available_bytes

    keep, shapes, bad, have = [], [], [], available_bytes()
    for i, f in enumerate(files):
        try:
            D._regular_file(Path(f))
            with D._open_header(Path(f)) as im:
                D._check_image_header(Path(f), im, have)
                w, h = im.size
                shapes.append((h, w, 1 if im.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F") else 3,
                               im.format, im.mode))
            keep.append(i)
        except DataError as e:
            if policy == "stop":
                raise
            bad.append(str(e))
        except Exception as e:  # noqa: BLE001  (any unreadable header: PIL raises many kinds)
            msg = f"{f}: not a readable image ({e.__class__.__name__}: {str(e)[:80]})"
            if policy == "stop":
                raise DataError(msg) from None
            bad.append(msg)
    return keep, shapes, bad


def scan(path: Path, seed: int, policy: str = "stop"):
    """``--data`` folder or manifest -> (x_train FileImages, y_train, x_test FileImages, y_test, class names);
    TFRecord shards -> the same with ``records.RecordImages``."""
    from kerascnn import data as D
    from kerascnn.data import formats

    if is_tfrecord(path):
        from kerascnn.data import records

        return records.scan(path, seed)
    if path.is_dir():
        if (path / "train").is_dir() and (path / "test").is_dir():
            names, f_tr, y_tr = D._scan_folder(path / "train")
            names_te, f_te, y_te = D._scan_folder(path / "test")
            if names_te != names:
                raise DataError(f"{path}: train/ and test/ have different class folders")
        else:
            names, f_tr, y_tr = D._scan_folder(path)
            f_te, y_te = [], np.zeros(0, np.int64)
    else:
        f_tr, y_tr, names = formats.manifest_files(path)
        f_te, y_te = [], np.zeros(0, np.int64)
    files = [str(f) for f in list(f_tr) + list(f_te)]
    y = np.concatenate([y_tr, y_te]).astype(np.int64)
    keep, shapes, bad = header_pass(files, policy)
    if not keep:
        raise DataError(f"{path}: no readable images ({len(bad)} bad)")
    files, y = [files[i] for i in keep], y[keep]
    n_tr = sum(1 for i in keep if i < len(f_tr))
    size = Counter(s[:2] for s in shapes).most_common(1)[0][0]
    channels = Counter(s[2] for s in shapes).most_common(1)[0][0]
    mode = "L" if channels == 1 else "RGB"
    native = [s[:2] == size and s[3] in ("JPEG", "PNG") and s[4] == mode for s in shapes]
    all_images = FileImages(files, size, channels, bad=bad, native=native)
    x_tr, x_te = all_images.subset(range(n_tr)), all_images.subset(range(n_tr, len(files)))
    x_tr.bad = bad
    y_tr, y_te = y[:n_tr], y[n_tr:]
    if not len(x_te):  # no test/ folder: the same seeded 80/20 split as the in-memory path
        idx = np.arange(len(x_tr))
        i_tr, _, i_te, _ = D.split_validation(idx, y_tr, 0.2, seed)
        x_tr, x_te, y_te, y_tr = x_tr.subset(i_tr), x_tr.subset(i_te), y_tr[i_te], y_tr[i_tr]
        x_tr.bad = bad
    D.check_labels(path, {"y_train": y_tr, "y_test": y_te}, names)
    return x_tr, y_tr, x_te, y_te, names


def is_tfrecord(path) -> bool:
    """``--data`` names TFRecord shards (one, a folder of them, or a glob)."""
    from kerascnn.data import formats

    if path is None:
        return False
    kind = formats.detect(Path(path))
    return kind == "tfrecord-glob" or (kind in ("tfrecord", "tfrecord-dir") and Path(path).exists())


def source_name(path: Path) -> str:
    """The data's name in the start-up line and metrics, as the in-memory path names it."""
    from kerascnn.data import formats

    if is_tfrecord(path):
        return f"{formats.detect(path)}:{path}"
    return f"dir:{path}" if path.is_dir() else f"manifest:{path}"


def streamable(path) -> bool:
    p = Path(path)
    return is_tfrecord(p) or (p.exists() and (p.is_dir() or p.suffix.lower() in (".csv", ".tsv", ".txt")))


def choose(mode: str, n: int, size: tuple, channels: int, path) -> bool:
    """True to stream: ``on``; ``off``; ``auto``: when the prepared float32 images (N*H*W*C*4)
    would take more than half the available memory."""
    if mode == "on":
        if path is None or not streamable(path):
            raise ConfigError("--stream on needs --data DIR (class folders), a manifest (.csv/.txt) "
                              "or TFRecord shards")
        return True
    if mode == "off" or path is None:
        return False
    from kerascnn.guard import available_bytes

    p = Path(path)
    if not streamable(p):
        return False
    from kerascnn.data import formats

    if p.is_dir() and formats.detect(p) not in (None, "tfrecord-dir"):
        return False
    return n * size[0] * size[1] * channels * 4 > available_bytes() // 2


def wants_stream(mode: str, path, size: tuple, channels: int, strict: bool = True) -> bool:
    """``choose`` for ``--data PATH`` as given (None, missing, or a format other than a folder or
    manifest: in memory). ``strict`` False (evaluate, predict) reads ``on`` as ``auto`` where it
    does not apply instead of refusing."""
    if mode not in ("auto", "on", "off"):
        mode = "auto"
    if mode == "off" or not path or not (Path(path).exists() or is_tfrecord(path)):
        return False
    p = Path(path)
    if not strict and mode == "on" and not streamable(p):
        return False
    n = count_files(p) if mode == "auto" and streamable(p) else 0
    return choose(mode, n, size, channels, p)


def count_files(path: Path) -> int:
    """A cheap count of the images a folder / manifest holds (no header reads); of the records
    in TFRecord shards (their length headers only)."""
    from kerascnn import data as D

    if is_tfrecord(path):
        from kerascnn.data import records

        return records.count_all(path)
    if not path.is_dir():
        return sum(1 for ln in path.read_text(errors="replace").splitlines() if ln.strip())
    exts = D.IMAGE_EXTENSIONS
    return sum(1 for f in path.rglob("*") if f.suffix.lower() in exts)


def worker_share(order, batch_size: int, worker: tuple = (0, 1)):
    """Worker ``index`` of ``count``'s share of one epoch's file order (numpy or tf, length
    ``steps * batch_size``): of every global batch ``order[i*B:(i+1)*B]`` the ``index``-th of
    ``count`` equal consecutive slices. The shares are disjoint, cover every file of the epoch
    exactly once, and step i's shares put together are step i's batch of a single worker, so the
    gradient (averaged over the global batch) is the same with 1 or ``count`` workers."""
    index, count = worker
    if count == 1:
        return order
    if batch_size % count:
        raise ConfigError(f"batch size {batch_size} must be divisible by the {count} workers")
    if isinstance(order, np.ndarray):
        return order.reshape(-1, count, batch_size // count)[:, index].reshape(-1)
    import tensorflow as tf

    return tf.reshape(tf.reshape(order, [-1, count, batch_size // count])[:, index], [-1])


def stream_dataset(x: FileImages, y, batch_size: int, seed: int, first_epoch: int, epochs: int,
                   augment: bool = False, worker: tuple = (0, 1), first_step: int = 0):
    """As ``data.train_dataset`` (same order: epoch e is ``epoch_order(n, seed, e)`` cut into
    ``n // batch_size`` full batches; same augmentation keyed by (seed, epoch, batch index)) but
    each image is read from disk, decoded and resized in parallel by ``tf.data``.

    ``worker`` (index, count): this worker's share only (``worker_share``, before anything is
    read or decoded): batches of ``batch_size // count`` images, augmented exactly as those images
    are within the single-worker batch."""
    import tensorflow as tf

    from kerascnn import data as D

    n = len(x)
    steps = n // batch_size
    if steps < 1:
        raise ConfigError(f"batch size {batch_size} is larger than the {n} training images")
    if x.cache_file:
        return _cached_batches(x, y, batch_size, seed, first_epoch, epochs, augment, worker, first_step)
    if not isinstance(x, FileImages):   # records.RecordImages: its own epoch order (shards, windows)
        from kerascnn.data import records

        return records.stream_dataset(x, batch_size, seed, first_epoch, epochs, augment, worker, first_step)
    labels = tf.constant(np.asarray(y, dtype=np.int64))
    augmenter = D._augmenter(tuple(x.size) + (x.channels,), seed, worker) if augment else None
    share = batch_size // worker[1]

    def epoch_items(epoch):
        idx = worker_share(epoch_order_flat(n, seed, epoch, steps * batch_size), batch_size, worker)
        pos = tf.range(steps * share, dtype=tf.int64)
        return tf.data.Dataset.from_tensor_slices((tf.fill([steps * share], epoch), pos // share, idx))

    load = _loader(x)

    def item(epoch, i, k):
        return epoch, i, load(k), tf.gather(labels, k)

    def finish(epoch, i, xb, yb):
        return (augmenter(epoch[0], i[0], xb), yb) if augmenter else (xb, yb)

    ds = tf.data.Dataset.range(first_epoch, epochs).flat_map(epoch_items).skip(first_step * share)  # before decoding
    ds = ds.map(item, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(share, drop_remainder=True)
    return ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


def distribute_train(strategy, x: FileImages, y, batch_size: int, seed: int, first_epoch: int, epochs: int,
                     augment: bool = False, first_step: int = 0):
    """The training stream on ``strategy``. Several workers (MultiWorkerMirroredStrategy): each
    worker builds only its share (``worker_share`` by file index, before decoding;
    ``distribute_datasets_from_function``, no auto-sharding), cut into its replicas' batches;
    otherwise ``experimental_distribute_dataset`` of the whole stream."""
    import tensorflow as tf

    if workers(strategy) <= 1:
        return strategy.experimental_distribute_dataset(
            stream_dataset(x, y, batch_size, seed, first_epoch, epochs, augment, first_step=first_step))

    def per_worker(ctx):
        share = (ctx.input_pipeline_id, ctx.num_input_pipelines)
        ds = stream_dataset(x, y, batch_size, seed, first_epoch, epochs, augment, worker=share, first_step=first_step)
        per_replica = ctx.get_per_replica_batch_size(batch_size)
        return ds if per_replica == batch_size // share[1] else ds.rebatch(per_replica).prefetch(tf.data.AUTOTUNE)

    return strategy.distribute_datasets_from_function(per_worker)


def workers(strategy) -> int:
    """How many workers (input pipelines) read the data: MultiWorkerMirroredStrategy's workers
    (chief included, from its cluster), else 1."""
    import tensorflow as tf

    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 1
    try:
        spec = resolver.cluster_spec().as_dict()
    except (AttributeError, ValueError):
        return 1
    return max(1, len(spec.get("worker", [])) + len(spec.get("chief", [])))


def decode_all(x: FileImages, into=None, batch: int = 256) -> np.ndarray:
    """Every image of ``x`` decoded (in parallel, file order) into ``into`` (an array or memmap) or
    a new float32 array, after checking it fits in memory."""
    if into is None:
        from kerascnn import data as D

        D._check_fits(Path(x.files[0]).parent if len(x) else "images", (len(x),) + tuple(x.size) + (x.channels,), 4,
                      f"{len(x):,} images cached at {x.size[0]}x{x.size[1]}x{x.channels} in float32",
                      "; use --cache disk")
        into = np.empty((len(x),) + tuple(x.size) + (x.channels,), np.float32)
    i = 0
    for xb, _ in eval_dataset(x, np.zeros(len(x), np.int64), batch).as_numpy_iterator():
        into[i:i + len(xb)] = xb
        i += len(xb)
    return into


def disk_cache(x: FileImages, path: Path) -> FileImages:
    """``--cache disk``: decode once into ``path`` (.npy, written beside as .partial and renamed;
    reused when a complete one of the right shape is there, e.g. on --resume)."""
    import dataclasses
    import os

    shape = (len(x),) + tuple(x.size) + (x.channels,)
    if path.is_file():
        try:
            if np.load(path, mmap_mode="r").shape == shape:
                return dataclasses.replace(x, cache_file=str(path))
        except (OSError, ValueError):
            pass
    tmp = path.with_name(path.name + ".partial")
    mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
    decode_all(x, into=mm)
    mm.flush()
    del mm
    os.replace(tmp, path)
    return dataclasses.replace(x, cache_file=str(path))


def _cached_batches(x: FileImages, y, batch_size, seed, first_epoch, epochs, augment, worker=(0, 1), first_step=0):
    """Batches gathered from the --cache disk file, in the same (seed, epoch) order."""
    import tensorflow as tf

    from kerascnn import data as D

    mm = np.load(x.cache_file, mmap_mode="r")
    n, steps, share = len(x), len(x) // batch_size, batch_size // worker[1]
    labels = tf.constant(np.asarray(y, dtype=np.int64))
    augmenter = D._augmenter(tuple(x.size) + (x.channels,), seed, worker) if augment else None

    def epoch_batches(epoch):
        idx = tf.reshape(worker_share(D.epoch_order(n, seed, epoch)[:steps * batch_size], batch_size, worker),
                         [steps, share])
        return tf.data.Dataset.from_tensor_slices((tf.fill([steps], epoch), tf.range(steps, dtype=tf.int64), idx))

    def gather(epoch, i, idx):
        xb = tf.numpy_function(lambda k: np.ascontiguousarray(mm[k]), [idx], tf.float32, stateful=False)
        xb.set_shape((share,) + tuple(x.size) + (x.channels,))
        yb = tf.gather(labels, idx)
        return (augmenter(epoch, i, xb), yb) if augmenter else (xb, yb)

    ds = tf.data.Dataset.range(first_epoch, epochs).flat_map(epoch_batches).skip(first_step)
    return ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


def epoch_order_flat(n, seed, epoch, count):
    from kerascnn import data as D

    return D.epoch_order(n, seed, epoch)[:count]


def _loader(x: FileImages):
    """tf function: file index -> float32 (h, w, channels) scaled, as ``prepare_images`` does."""
    import tensorflow as tf

    h, w = x.size
    c_mid = x.channels if (x.raw_channels != x.channels and x.channels == 1) else x.raw_channels
    shrink = bool(x.raw_size[0] > h or x.raw_size[1] > w)

    native = tf.constant(np.asarray(x.native if x.native else [False] * len(x), bool))
    paths = tf.constant(list(x.files))
    luma = tf.constant([0.299, 0.587, 0.114], tf.float32)

    def by_pil(k):
        return tf.numpy_function(lambda i: x.load(int(i)), [k], tf.float32, stateful=False)

    def by_tf(k):  # the common case, decoded in TF's threads without the GIL: same pixels as PIL's decode
        img = tf.io.decode_image(tf.io.read_file(paths[k]), channels=x.raw_channels, expand_animations=False)
        img = tf.cast(img, tf.float32)
        if c_mid != x.raw_channels:  # RGB -> gray before resizing, as load() and prepare_images do
            img = tf.tensordot(img, luma, 1)[..., None]
        return img

    def load(k):
        img = tf.cond(native[k], lambda: by_tf(k), lambda: by_pil(k))
        img.set_shape(tuple(x.raw_size) + (c_mid,))
        if tuple(x.raw_size) != (h, w):
            img = tf.image.resize(img, (h, w), method="bilinear", antialias=shrink)
        img = img * np.float32(x.pixel_scale)
        if c_mid != x.channels:  # gray -> RGB after resizing
            img = tf.repeat(img[..., :1], x.channels, axis=-1)
        return img

    return load


def eval_dataset(x: FileImages, y, batch_size: int):
    """Batches in file order (no shuffle), decoded in parallel, prefetched."""
    import tensorflow as tf

    if x.cache_file:
        mm = np.load(x.cache_file, mmap_mode="r")
        ds = tf.data.Dataset.from_tensor_slices(np.asarray(y, np.int64)).batch(batch_size)
        starts = tf.data.Dataset.range(0, len(x), batch_size)

        def read(s, yb):
            xb = tf.numpy_function(lambda a, m: np.ascontiguousarray(mm[int(a):int(a) + int(m)]),
                                   [s, tf.shape(yb, out_type=tf.int64)[0]], tf.float32, stateful=False)
            xb.set_shape((None,) + tuple(x.size) + (x.channels,))
            return xb, yb

        return tf.data.Dataset.zip((starts, ds)).map(read).prefetch(tf.data.AUTOTUNE)
    if not isinstance(x, FileImages):   # records.RecordImages: labels from the records, same order as y
        from kerascnn.data import records

        return records.eval_dataset(x, batch_size)
    load = _loader(x)
    ds = tf.data.Dataset.from_tensor_slices((tf.range(len(x), dtype=tf.int64), np.asarray(y, np.int64)))
    ds = ds.map(lambda k, yy: (load(k), yy), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
