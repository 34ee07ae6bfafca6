"""Streaming from disk: class folders and manifests too big to decode into memory.

``scan`` lists the files (``images._scan_names`` / a manifest: directory entries only), runs one
header pass (``headers.header_pass``: size, mode, readable, from each file's first bytes; nothing
decoded) that names each bad file, and returns a ``FileImages`` per split: the file list, labels,
the common raw size (the most frequent, as the in-memory path picks) and the model's input size.
``scan_split`` does the same for one split, opening only its files (``evaluate``).
``stream_dataset`` then yields one ``tf.data`` element per batch: the batch's files decoded in
parallel (``tf.map_fn``; JPEG/PNG already at the common size and mode by TensorFlow with PIL's
pixels, the others through PIL + ``images._conform``), then converted as one batch (luminance,
resize -- the antialiased shrink as two matrix products --, scale), in the order
``data.epoch_order(n, seed, e)`` over file indices, so a resumed run sees exactly the batches an
uninterrupted one would. The same decoders serve ``eval_dataset``, ``decode_raw`` (the in-memory
load of a folder) and ``file_batches`` (``predict``).

``choose`` decides in-memory vs streaming from what an in-memory run would hold
(``guard.in_memory_bytes``, calibrated on peak RSS) against the available memory (``--stream
auto``; ``guard.available_bytes``, which honours a memory cgroup), or as told (``on``/``off``);
``wants_stream`` refuses, in one line, in-memory data whose run would not fit.

Under MultiWorkerMirroredStrategy ``distribute_train`` gives each worker only its slice of every
global batch (``worker_share``, by file index, before decoding), so the workers together see
exactly one process's batches.

TFRecord shards (``is_tfrecord``: one, a folder, or a glob) go through the same entry points
(``scan``, ``choose``, ``stream_dataset``, ``eval_dataset``), which hand them to ``records``.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kerascnn.data import safe_read
from kerascnn.data.prepare import PARALLEL_FILES, luma, prepare_batch
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
    codec: str | None = None     # "JPEG" / "PNG" when every file decoded by TF is one (else tested per file)
    on_bad: str = "stop"         # --bad-files: an image that fails to decode in the stream stops or is skipped

    def __len__(self) -> int:
        return len(self.files)

    @property
    def shape(self) -> tuple:
        return (len(self.files),) + tuple(self.raw_size) + (self.raw_channels,)

    def subset(self, idx) -> FileImages:
        import dataclasses

        native = [self.native[i] for i in idx] if self.native else []
        return dataclasses.replace(self, files=[self.files[i] for i in idx], bad=[], native=native)

    def load(self, i: int, raw: bytes | None = None) -> np.ndarray:
        """File ``i`` (or its bytes ``raw``, already read) -> float32 (raw_h, raw_w, C') where C' =
        channels when going RGB -> gray, else raw."""
        from kerascnn.data import images

        im = images._read_image(Path(self.files[i]), self._memory(), raw)
        x = images._conform(im, self.raw_size, self.raw_channels).astype(np.float32)
        if x.shape[-1] != self.channels and self.channels == 1:  # RGB -> gray before resizing (as prepare_images)
            x = (x[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
        return x

    def _memory(self) -> int:
        """The available memory for the per-file bomb check, read once per FileImages (a run's
        split), not per file: ``guard.available_bytes`` reads /proc and the cgroup files."""
        have = self.__dict__.get("_have")
        if have is None:
            from kerascnn.guard import available_bytes

            have = self.__dict__["_have"] = available_bytes()
        return have


def header_pass(files: list, policy: str) -> tuple:
    """(kept indices, [(h, w, channels, format, mode)], bad "path: reason" lines): ``headers.header_pass``.
    ``policy`` stop: the first bad file is a one-line DataError; skip: bad files are counted and listed."""
    from kerascnn.data import headers

    return headers.header_pass(files, policy)


def _listing(path: Path) -> tuple:
    """(class names or None, train files, train labels, test files, test labels) of a class folder
    (``train/`` + ``test/`` aware) or a manifest, from the directory entries alone: no file opened."""
    from kerascnn.data import formats, images

    if path.is_dir():
        if (path / "train").is_dir() and (path / "test").is_dir():
            names, f_tr, y_tr = images._scan_names(path / "train")
            names_te, f_te, y_te = images._scan_names(path / "test")
            if names_te != names:
                raise DataError(f"{path}: train/ and test/ have different class folders")
        else:
            names, f_tr, y_tr = images._scan_names(path)
            f_te, y_te = [], np.zeros(0, np.int64)
    else:
        f_tr, y_tr, names = formats.manifest_files(path)
        f_te, y_te = [], np.zeros(0, np.int64)
    return names, [str(f) for f in f_tr], np.asarray(y_tr, np.int64), [str(f) for f in f_te], np.asarray(y_te, np.int64)


def _file_images(path, files: list, policy: str, shapes: list | None = None):
    """Header pass over ``files`` -> (FileImages of the readable ones at their most common size and
    channel count, kept indices); ``bad`` lists the skipped ones. ``shapes``: the pass already made."""
    keep, shapes, bad = header_pass(files, policy) if shapes is None else (list(range(len(files))), shapes, [])
    if not keep:
        raise DataError(f"{path}: no readable images ({len(bad)} bad)")
    size = Counter(s[:2] for s in shapes).most_common(1)[0][0]
    channels = Counter(s[2] for s in shapes).most_common(1)[0][0]
    mode = "L" if channels == 1 else "RGB"
    native = [s[:2] == size and s[3] in ("JPEG", "PNG") and s[4] == mode for s in shapes]
    return FileImages([files[i] for i in keep], size, channels, bad=bad, native=native, codec=codec_of(shapes),
                      on_bad=policy), keep


def codec_of(shapes: list) -> str | None:
    """"JPEG" or "PNG" when every file (``header_pass`` shapes) is one, else None."""
    kinds = {s[3] for s in shapes}
    return next(iter(kinds)) if len(kinds) == 1 and kinds <= {"JPEG", "PNG"} else None


def scan(path: Path, seed: int, policy: str = "stop"):
    """``--data`` folder or manifest -> (x_train FileImages, y_train, x_test FileImages, y_test, class names);
    TFRecord shards -> the same with ``records.RecordImages``."""
    from kerascnn import data as D

    if is_tfrecord(path):
        from kerascnn.data import records

        return records.scan(path, seed, policy)
    names, f_tr, y_tr, f_te, y_te = _listing(path)
    files, y = f_tr + f_te, np.concatenate([y_tr, y_te])
    all_images, keep = _file_images(path, files, policy)
    bad, y = all_images.bad, y[keep]
    n_tr = sum(1 for i in keep if i < len(f_tr))
    x_tr, x_te = all_images.subset(range(n_tr)), all_images.subset(range(n_tr, len(keep)))
    x_tr.bad = bad
    y_tr, y_te = y[:n_tr], y[n_tr:]
    if not len(x_te):  # no test/ folder: the same seeded 80/20 split as the in-memory path
        idx = np.arange(len(x_tr))
        i_tr, _, i_te, _ = D.split_validation(idx, y_tr, 0.2, seed)
        x_tr, x_te, y_te, y_tr = x_tr.subset(i_tr), x_tr.subset(i_te), y_tr[i_te], y_tr[i_tr]
        x_tr.bad = bad
    D.check_labels(path, {"y_train": y_tr, "y_test": y_te}, names)
    return x_tr, y_tr, x_te, y_te, names


def scan_split(path: Path, seed: int, policy: str = "stop", split: str = "test"):
    """One split of ``scan`` -> (FileImages, labels, class names or None, number of classes), opening
    only that split's files: the other split is listed (labels, class folders) but never read, so
    ``evaluate`` on the test split touches only the files it scores. The exception: ``--bad-files
    skip`` without a ``test/`` folder, whose 80/20 split is drawn over the readable files, so every
    header is read (as ``scan`` does). The split's raw size is the most common among its own files.
    TFRecord shards: ``scan``'s split (its label pass reads every shard)."""
    from kerascnn import data as D

    if is_tfrecord(path) or (policy == "skip" and not _has_test_folder(path)):
        x_tr, y_tr, x_te, y_te, names = scan(path, seed, policy)
        k = D.check_labels(path, {"y_train": y_tr, "y_test": y_te}, names)
        return (x_te, y_te, names, k) if split == "test" else (x_tr, y_tr, names, k)
    names, f_tr, y_tr, f_te, y_te = _listing(path)
    if not f_te:   # the seeded 80/20 split over the listing (every file is read by stop: none is dropped)
        i_tr, _, i_te, _ = D.split_validation(np.arange(len(f_tr)), y_tr, 0.2, seed)
        f_tr, y_tr, f_te, y_te = [f_tr[i] for i in i_tr], y_tr[i_tr], [f_tr[i] for i in i_te], y_tr[i_te]
    k = D.check_labels(path, {"y_train": y_tr, "y_test": y_te}, names)
    files, y = (f_te, y_te) if split == "test" else (f_tr, y_tr)
    if not files:
        raise DataError(f"{path}: the {split} split is empty")
    x, keep = _file_images(path, files, policy)
    return x, y[keep], names, k


def _has_test_folder(path: Path) -> bool:
    return path.is_dir() and (path / "train").is_dir() and (path / "test").is_dir()


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


def file_source(path) -> bool:
    """``--data`` names files read one by one: a class folder, a manifest or TFRecord shards (not a
    CIFAR / IDX folder, an archive or an ``.npz``, which load whole into memory)."""
    from kerascnn.data import formats

    if path is None:
        return False
    p = Path(path)
    if is_tfrecord(p):
        return True
    if not p.exists():
        return False
    return formats.detect(p) is None if p.is_dir() else p.suffix.lower() in (".csv", ".tsv", ".txt")


def streamable(path) -> bool:
    p = Path(path)
    return is_tfrecord(p) or (p.exists() and (p.is_dir() or p.suffix.lower() in (".csv", ".tsv", ".txt")))


def choose(mode: str, n: int, size: tuple, channels: int, path, model=None) -> bool:
    """True to stream: ``on``; ``off``; ``auto``: when an in-memory run of these N images would not
    fit in the available memory (``guard.in_memory_bytes``: about 4 x the prepared float32 images
    N*H*W*C*4 plus the runtime, as measured; the raw images counted at the model's size; plus the
    model's training, ``model(n) -> (bytes, words)``, where given)."""
    if mode == "on":
        if path is None or not streamable(path):
            raise ConfigError("--stream on needs --data DIR (class folders), a manifest (.csv/.txt) "
                              "or TFRecord shards")
        return True
    if mode == "off" or path is None:
        return False
    from kerascnn.guard import available_bytes, in_memory_bytes

    p = Path(path)
    if not streamable(p):
        return False
    from kerascnn.data import formats

    if p.is_dir() and formats.detect(p) not in (None, "tfrecord-dir"):
        return False
    extra = model(n)[0] if model is not None else 0
    return in_memory_bytes(n * size[0] * size[1] * channels, n, size, channels) + extra > available_bytes()


def wants_stream(mode: str, path, size: tuple, channels: int, strict: bool = True, model=None) -> bool:
    """``choose`` for ``--data PATH`` as given (None, missing, or a format other than a folder or
    manifest: in memory). ``strict`` False (evaluate, predict) reads ``on`` as ``auto`` where it
    does not apply instead of refusing. ``strict`` (train): data going into memory whose run would
    not fit is refused here, in one line, before anything is loaded (``guard.check_in_memory``; with
    ``model``, the model's training counted together with the data)."""
    if mode not in ("auto", "on", "off"):
        mode = "auto"
    if not path or not (Path(path).exists() or is_tfrecord(path)):
        return False
    p = Path(path)
    if mode == "off" or (not strict and mode == "on" and not streamable(p)):
        streaming = False
    else:
        n = count_files(p) if mode == "auto" and streamable(p) else 0
        streaming = choose(mode, n, size, channels, p, model)
    if not streaming and strict:
        from kerascnn.guard import check_in_memory

        plan = memory_plan(p, size, channels)
        if plan is not None:
            check_in_memory(p, plan[0], plan[1], size, channels, plan[2], plan[3], model)
    return streaming


def memory_plan(path, size: tuple, channels: int):
    """(raw image bytes, images prepared for training, load copies, hint) of ``--data PATH`` from
    headers, sizes and counts only (nothing decoded), for ``guard.check_in_memory``; None when the
    format is not known here (``load_data`` then says what is wrong)."""
    from kerascnn.data import formats

    path = Path(path)
    try:
        kind = formats.detect(path)
        if file_source(path):   # folders, manifests, shards: raw size taken at the model's input
            n = count_files(path)
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


def count_files(path: Path) -> int:
    """A cheap count of the images a folder / manifest holds (no header reads); of the records
    in TFRecord shards (their length headers only)."""
    from kerascnn import data as D

    if is_tfrecord(path):
        from kerascnn.data import records

        return records.count_all(path)
    if not path.is_dir():
        from kerascnn.data import safe_read     # a FIFO named .csv would block read_text forever

        text = safe_read.read_regular(path, what="image list (manifest)").decode(errors="replace")
        return sum(1 for ln in text.splitlines() if ln.strip())
    return D.count_image_files(path)


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

    def epoch_batches(epoch):
        idx = worker_share(epoch_order_flat(n, seed, epoch, steps * batch_size), batch_size, worker)
        return tf.data.Dataset.from_tensor_slices((tf.fill([steps], epoch), tf.range(steps, dtype=tf.int64),
                                                   tf.reshape(idx, [steps, share])))

    load, guard = _batch_loader(x), _guard(x)
    spec = [tf.TensorSpec(tuple(x.size) + (x.channels,), tf.float32)]

    def fast(epoch, i, ks):
        return epoch, i, ks, load(ks)

    def slow(epoch, i, ks):   # a batch with an image that does not decode: its other images fill its place
        return guard.salvage(ks, lambda k: (load(k[None])[0],), spec, epoch, fill=True).map(
            lambda used, xb: (epoch, i, used, xb))

    def batch(epoch, i, ks, xb):
        return (augmenter(epoch, i, xb) if augmenter else xb), tf.gather(labels, ks)

    ds = safe_read.guarded_batches(tf.data.Dataset.range(first_epoch, epochs).flat_map(epoch_batches)
                                     .skip(first_step), fast, slow)   # skipped before decoding
    return ds.map(batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


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
    for xb, _ in eval_dataset(x, np.zeros(len(x), np.int64), batch, strict=True).as_numpy_iterator():
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


def decode_native(contents, channels: int, codec: str | None = None):
    """JPEG or PNG bytes -> uint8 (h, w, channels) in TF's threads (no GIL), with PIL's pixels: JPEG
    through libjpeg's accurate integer IDCT (TF's default, the fast one, differs from PIL's decode by
    up to 5 levels), PNG as is. ``channels`` 0: the file's own. ``codec`` "JPEG" / "PNG" when every
    file is one (no per-file test: a ``tf.cond`` per image costs about a quarter of a 64x64 decode)."""
    import tensorflow as tf

    def jpeg():
        return tf.io.decode_jpeg(contents, channels=channels, dct_method="INTEGER_ACCURATE")

    def png():
        return tf.io.decode_png(contents, channels=channels)

    if codec in ("JPEG", "PNG"):
        return jpeg() if codec == "JPEG" else png()
    return tf.cond(tf.io.is_jpeg(contents), jpeg, png)


def _batch_loader(x: FileImages):
    """tf function: a vector of file indices -> float32 (B, h, w, channels) ready for the model: the
    files decoded in parallel within the batch (``tf.map_fn``; batches themselves run in parallel in
    ``tf.data``), then converted as one batch (``_decoder``). One ``tf.data`` element per batch, not
    per image: the per-element cost of a pipeline is about a third of a 64x64 JPEG's decode."""
    import tensorflow as tf

    item, prepare = _decoder(x)
    read = _read_files(x)

    def load(ks):
        raw, ok = tf.numpy_function(read, [ks], (tf.string, tf.bool), stateful=False)
        raw.set_shape(ks.shape)
        with tf.control_dependencies([tf.debugging.assert_equal(ok, True, message="refused")]):
            return prepare(tf.map_fn(item, (ks, raw), fn_output_signature=item.spec,
                                     parallel_iterations=PARALLEL_FILES))

    return load


def _read_files(x: FileImages):
    """Python, once per batch: file indices -> (their bytes, ok): each a regular file of bounded size
    whose header claims at most ``MAX_IMAGE_PIXELS``, checked on the opened file when it is read
    (``safe_read.read_image_bytes``: a FIFO or a link to /dev/zero swapped in is refused, no hang)."""
    def read(ks):
        got = [safe_read.read_image_bytes(x.files[int(k)]) for k in ks]
        return np.array([g[0] for g in got], dtype=object), np.array([g[1] for g in got], bool)

    return read


def _guard(x: FileImages, on_bad: str | None = None):
    name = str(Path(x.files[0]).parent.parent) if len(x) else "the stream"
    from kerascnn.data.images import diagnose_file

    return safe_read.Guard(lambda k: diagnose_file(x.files[k]), on_bad or x.on_bad, x.bad, name=name)


def _decoder(x: FileImages):
    """(item, prepare), the tf functions of the stream: ``item(k)``: file k at the raw size (uint8
    with the raw channels when every file is decoded by TensorFlow -- JPEG/PNG already gray/RGB at the
    raw size --, else float32 with RGB -> gray applied, the others through ``x.load``'s PIL path);
    ``prepare(batch)``: float32 (B, h, w, channels) as ``prepare_images`` makes them
    (``prepare.prepare_batch``: RGB -> gray, resize, scale, gray -> RGB, once per batch)."""
    import tensorflow as tf

    raw = tuple(x.raw_size)
    gray = x.raw_channels == 3 and x.channels == 1      # RGB files, gray model: luminance before resizing
    c_mid = 1 if gray else x.raw_channels
    native = np.asarray(x.native if x.native else [False] * len(x), bool)

    def by_tf(contents):   # the file's bytes, read by the batch's Python call (regular file, bounded)
        return decode_native(contents, x.raw_channels, x.codec)

    def by_pil(k, contents):
        return tf.numpy_function(lambda i, b: x.load(int(i), bytes(b)), [k, contents], tf.float32, stateful=False)

    every = bool(native.all())
    if every:
        def item(kc):
            img = by_tf(kc[1])
            img.set_shape(raw + (x.raw_channels,))
            return img
    else:
        flags = tf.constant(native)

        def decoded(contents):
            img = tf.cast(by_tf(contents), tf.float32)
            return luma(img) if gray else img

        def item(kc):
            k, contents = kc
            img = (tf.cond(flags[k], lambda: decoded(contents), lambda: by_pil(k, contents)) if native.any()
                   else by_pil(k, contents))
            img.set_shape(raw + (c_mid,))
            return img
    item.spec = tf.TensorSpec(raw + ((x.raw_channels,) if every else (c_mid,)), tf.uint8 if every else tf.float32)

    def prepare(xb):
        return prepare_batch(xb, x.size, x.channels, x.pixel_scale, to_gray=every and gray)

    return item, prepare


def eval_dataset(x: FileImages, y, batch_size: int, strict: bool = False):
    """Batches in file order (no shuffle), decoded in parallel, prefetched. An image that does not
    decode stops with one line naming it; with ``x.on_bad`` "skip" (and not ``strict``: callers
    that match the outputs to ``y`` by position) it is left out, with its label."""
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

        return records.eval_dataset(x, batch_size, strict)
    load, guard = _batch_loader(x), _guard(x, "stop" if strict else None)
    labels = tf.constant(np.asarray(y, np.int64))
    spec = [tf.TensorSpec(tuple(x.size) + (x.channels,), tf.float32)]

    def slow(ks):
        return guard.salvage(ks, lambda k: (load(k[None])[0],), spec, -1, fill=False).map(
            lambda used, xb: (xb, tf.gather(labels, used)))

    ds = tf.data.Dataset.range(len(x)).batch(batch_size)
    return safe_read.guarded_batches(ds, lambda ks: (load(ks), tf.gather(labels, ks)), slow).prefetch(tf.data.AUTOTUNE)


def file_batches(files: list, shapes: list, size: tuple, channels: int, pixel_scale: float, batch: int):
    """Image files (in this order; ``shapes`` from ``header_pass``) -> a ``tf.data`` stream of float32
    batches (B, h, w, channels), each image prepared from its own size exactly as ``prepare_images``
    prepares it alone (predict's contract), decoded in parallel (JPEG/PNG by TensorFlow, other modes
    through PIL). Files that all share one size and channel count are converted per batch
    (``_decoder``); otherwise per image. At most a few batches are decoded ahead of the reader."""
    import tensorflow as tf

    h, w = int(size[0]), int(size[1])
    native = [s[3] in ("JPEG", "PNG") and s[4] in ("L", "RGB") for s in shapes]
    parallel = max(1, min(8, os.cpu_count() or 1))
    if len({s[:3] for s in shapes}) == 1:     # one raw size and channel count: batch-level conversions
        x = FileImages(list(files), tuple(shapes[0][:2]), shapes[0][2], (h, w), channels, pixel_scale, native=native,
                       codec=codec_of(shapes))
        load = _batch_loader(x)
        return tf.data.Dataset.range(len(files)).batch(batch).map(load, num_parallel_calls=2,
                                                                  deterministic=True).prefetch(1)
    from kerascnn.data import images
    from kerascnn.guard import available_bytes

    paths, flags, have = tf.constant([str(f) for f in files]), tf.constant(native), available_bytes()
    codec = codec_of(shapes)

    def pil(k):
        def read(i):
            a = images._read_image(Path(files[int(i)]), have).astype(np.float32)
            return a[..., None] if a.ndim == 2 else a

        return tf.numpy_function(read, [k], tf.float32, stateful=False)

    def read(k):   # a regular file of bounded size, checked on the opened file (no FIFO, no /dev/zero)
        out = tf.numpy_function(lambda p: safe_read.read_regular(p.decode("utf-8", "surrogateescape")),
                                [paths[k]], tf.string, stateful=False)
        out.set_shape(())
        return out

    def one(k):
        img = tf.cond(flags[k], lambda: tf.cast(decode_native(read(k), 0, codec), tf.float32),
                      lambda: pil(k))
        img.set_shape((None, None, None))
        if channels == 1:   # RGB -> gray before resizing
            img = tf.cond(tf.shape(img)[-1] == 3, lambda: luma(img), lambda: img[..., :1])
        hw = tf.shape(img)[:2]
        img = tf.cond(tf.reduce_all(tf.equal(hw, [h, w])), lambda: img,
                      lambda: tf.cond(tf.reduce_any(hw > [h, w]),
                                      lambda: tf.image.resize(img, (h, w), method="bilinear", antialias=True),
                                      lambda: tf.image.resize(img, (h, w), method="bilinear")))
        img = img * np.float32(pixel_scale)
        if channels == 3:   # gray -> RGB after resizing
            img = tf.cond(tf.shape(img)[-1] == 1, lambda: tf.repeat(img, 3, axis=-1), lambda: img)
        img.set_shape((h, w, channels))
        return img

    ds = tf.data.Dataset.range(len(files)).map(one, num_parallel_calls=parallel, deterministic=True)
    return ds.batch(batch).prefetch(1)


def decode_raw(x: FileImages, batch: int = 256) -> np.ndarray:
    """Every file of ``x`` -> uint8 (N, raw_h, raw_w, raw_channels), in file order, decoded in
    parallel: JPEG/PNG already at the raw size and mode by TensorFlow (PIL's pixels), the others
    through PIL + ``images._conform`` (as ``images._stack`` does). The in-memory path's decode."""
    import tensorflow as tf

    from kerascnn.data import images

    raw, c = tuple(x.raw_size), x.raw_channels
    native = np.asarray(x.native if x.native else [False] * len(x), bool)
    flags, have, read = tf.constant(native), x._memory(), _read_files(x)

    def pil(k):
        def decode(i):
            return images._conform(images._read_image(Path(x.files[int(i)]), have), raw, c)

        return tf.numpy_function(decode, [k], tf.uint8, stateful=False)

    def item(kc):
        k, contents = kc
        img = tf.cond(flags[k], lambda: decode_native(contents, c, x.codec), lambda: pil(k))
        img.set_shape(raw + (c,))
        return img

    def load(ks):   # the batch's files read in one Python call: regular files of bounded size only
        contents, ok = tf.numpy_function(read, [ks], (tf.string, tf.bool), stateful=False)
        contents.set_shape(ks.shape)
        with tf.control_dependencies([tf.debugging.assert_equal(ok, True, message="refused")]):
            return tf.map_fn(item, (ks, contents), fn_output_signature=spec, parallel_iterations=PARALLEL_FILES)

    spec = tf.TensorSpec(raw + (c,), tf.uint8)
    ds = tf.data.Dataset.range(len(x)).batch(batch).map(load, num_parallel_calls=tf.data.AUTOTUNE,
                                                        deterministic=True).prefetch(1)
    out, i = np.empty((len(x),) + raw + (c,), np.uint8), 0
    for xb in named_errors(ds.as_numpy_iterator(), x.files, batch):
        out[i:i + len(xb)] = xb
        i += len(xb)
    return out


def named_errors(batches, files: list, batch: int):
    """Iterate ``batches`` (of ``batch`` files each, in ``files`` order); a file TensorFlow cannot
    decode (a JPEG cut short, a corrupt PNG body: the header pass reads headers only) becomes the
    one-line DataError PIL's decode gives for it, naming the file, instead of TensorFlow's text."""
    import tensorflow as tf

    from kerascnn.data import images

    i, it = 0, iter(batches)
    while True:
        try:
            xb = next(it)
        except StopIteration:
            return
        except tf.errors.OpError as e:
            part = files[i:i + batch]
            for f in part:   # PIL names the file (and why) as the in-memory path always did
                images._read_image(Path(f))
            from kerascnn.errors import tf_cause

            raise DataError(f"{part[0]}: one of these {len(part)} files cannot be decoded ({tf_cause(e)})") from None
        yield xb
        i += len(xb)
