"""Streaming TFRecord shards (``image/encoded`` + ``image/class/label``, as ``kerascnn shards`` writes).

``count_records`` counts a shard's records from their length headers alone (seeks, reads 12 bytes
per record: what ``--stream auto`` needs to estimate the decoded size). ``scan`` then makes one
label pass over every shard at once (only ``image/class/label``, ``image/class/text`` and
``image/height``/``width`` are parsed, nothing is decoded; a corrupt shard is then named by a pass
per shard) and returns a ``RecordImages`` per
split: the shards, their record counts and the GLOBAL record indices (train shards first, in
name order) of the split. The train / test / validation splits are the in-memory path's own
(``split_validation`` over record indices), applied in the stream by a boolean mask.

Epoch order. A TFRecord file cannot be read in a random record order cheaply, so epoch e is:
the shard order ``epoch_order(n_shards, seed, e)``; the shards interleaved record by record
(``CYCLE`` at a time, ``deterministic=True``); the records cut into windows of ``window`` records
(about ``SHUFFLE_BYTES`` of serialized records) and each window permuted by a stateless shuffle
keyed by (seed, e, window). Everything is a function of (seed, e) only -- no RNG state, no
global seed -- so a resumed run sees exactly the batches an uninterrupted one would. Records
move only within their window: a weaker shuffle than the folder stream's full permutation
(write the shards in a shuffled order, as ``kerascnn shards`` does).

The stream cuts its batches from the permuted windows (``epoch_batches``: ``rebatch``, no
``tf.data`` element per record) and decodes a batch at a time (``parse_example`` + ``tf.map_fn``),
then converts it as the folder stream does (``_decoder``); ``epoch_records`` gives the same order
record by record.

Several workers (``worker=(i, n)``): with at least as many shards as workers each worker reads
only shard files i, i+n, ... of the epoch's shard order (``AutoShardPolicy.FILE``; it repeats its
own records if its files hold fewer than its share of the epoch); with fewer shards every worker
reads every shard and keeps only its slice of each global batch before decoding (``DATA``: the
workers together see exactly the one-process batches). ``policy`` says which and why.
"""
from __future__ import annotations

import dataclasses
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kerascnn.data import safe_read
from kerascnn.errors import DataError, tf_cause

SHUFFLE_BYTES = 64 << 20      # serialized records held per shuffle window
MIN_WINDOW, MAX_WINDOW = 256, 65536
CYCLE = 8                     # shards read at once (interleave)


@dataclass
class RecordImages:
    """Images in TFRecord shards: decoded on demand to float32 (H, W, channels) at the model's input size."""

    shards: list                 # str paths (train shards then test shards)
    counts: list                 # records per shard
    idx: np.ndarray              # sorted global record indices of this split
    raw_size: tuple              # (h, w) every image is first brought to (the most common size)
    raw_channels: int            # 1 or 3
    size: tuple = (0, 0)         # model input (h, w)
    channels: int = 1
    pixel_scale: float = 1.0 / 255.0
    window: int = MIN_WINDOW     # records per shuffle window
    bad: list = field(default_factory=list)
    cache_file: str | None = None
    on_bad: str = "stop"         # --bad-files: a record whose image fails to decode stops or is skipped

    def __len__(self) -> int:
        return len(self.idx)

    @property
    def files(self) -> list:
        return list(self.shards)

    @property
    def shape(self) -> tuple:
        return (len(self.idx),) + tuple(self.raw_size) + (self.raw_channels,)

    def subset(self, pos) -> RecordImages:
        return dataclasses.replace(self, idx=np.sort(np.asarray(self.idx)[np.asarray(pos, np.int64)]), bad=[])

    def decoded_bytes(self) -> int:
        return len(self.idx) * self.size[0] * self.size[1] * self.channels * 4

    def shards_holding(self) -> list:
        """Indices of the shards that hold at least one record of this split."""
        offsets = np.concatenate([[0], np.cumsum(self.counts)])
        owner = np.searchsorted(offsets, self.idx, side="right") - 1
        return sorted(set(owner.tolist()))


# --------------------------------------------------------------------------- counting and scanning
def count_records(path) -> int:
    """Records in one TFRecord file, from the length headers only (no payload read)."""
    import os

    path = Path(path)
    size, n, pos = path.stat().st_size, 0, 0
    with open(path, "rb") as fh:
        while pos < size:
            head = fh.read(12)
            if len(head) < 12:
                raise DataError(f"{path}: corrupt TFRecord file (truncated record header at byte {pos})")
            (length,) = struct.unpack("<Q", head[:8])
            pos += 12 + length + 4
            if pos > size:
                raise DataError(f"{path}: corrupt TFRecord file (record {n} runs past the end of the file)")
            fh.seek(pos, os.SEEK_SET)
            n += 1
    return n


def count_all(path: Path) -> int:
    from kerascnn.data import formats

    train, test = formats.tfrecord_files(path)
    return sum(count_records(f) for f in train + test)


MISSING_LABEL = np.iinfo(np.int64).min    # a record without image/class/label (told apart from a negative one)


def _label_pass(f: Path):
    """(labels, {label: text}, [(h, w)]) of one shard; nothing decoded."""
    import tensorflow as tf

    spec = {"image/class/label": tf.io.FixedLenFeature([], tf.int64, default_value=MISSING_LABEL),
            "image/class/text": tf.io.FixedLenFeature([], tf.string, default_value=b""),
            "image/height": tf.io.FixedLenFeature([], tf.int64, default_value=0),
            "image/width": tf.io.FixedLenFeature([], tf.int64, default_value=0)}
    labels, texts, sizes = [], {}, []
    try:
        ds = tf.data.TFRecordDataset(str(f)).batch(4096).map(lambda s: tf.io.parse_example(s, spec))
        for ex in ds.as_numpy_iterator():
            lab = ex["image/class/label"]
            first = sum(len(x) for x in labels)
            safe_read.check_record_fields(f, first, lab, ex["image/height"], ex["image/width"], MISSING_LABEL)
            labels.append(lab)
            for k, j in zip(*np.unique(lab, return_index=True)):   # the first text of each label
                t = ex["image/class/text"][j]
                if t and int(k) not in texts:
                    texts[int(k)] = t.decode("utf-8", "replace")
            sizes.extend(zip(ex["image/height"].tolist(), ex["image/width"].tolist()))
    except tf.errors.DataLossError as e:
        raise DataError(f"{f}: corrupt TFRecord file ({tf_cause(e)[:80]})") from None
    except tf.errors.OpError as e:
        raise DataError(f"{f}: cannot read ({tf_cause(e)[:80]})") from None
    return (np.concatenate(labels) if labels else np.zeros(0, np.int64)), texts, sizes


def _label_pass_all(shards: list):
    """([labels per shard], {label: text}, [(h, w)], [records per shard]) of every shard in ONE
    ``tf.data`` pass (one traced parse function, not one per shard: a quarter of the start-up on 32
    shards); the record counts from the length headers (``count_records``) cut it back into shards.
    A shard that does not read is then named by the per-shard pass (``_label_pass``)."""
    import tensorflow as tf

    try:
        counts = [count_records(f) for f in shards]
    except DataError:
        counts = None
    if counts is not None and sum(counts):
        spec = {"image/class/label": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
                "image/class/text": tf.io.FixedLenFeature([], tf.string, default_value=b""),
                "image/height": tf.io.FixedLenFeature([], tf.int64, default_value=0),
                "image/width": tf.io.FixedLenFeature([], tf.int64, default_value=0)}
        try:
            ds = tf.data.TFRecordDataset([str(f) for f in shards]).batch(4096).map(lambda r: tf.io.parse_example(r, spec))
            parts = list(ds.as_numpy_iterator())
        except tf.errors.OpError:
            parts = None
        if parts is not None:
            lab = np.concatenate([p["image/class/label"] for p in parts]).astype(np.int64)
            heights = np.concatenate([p["image/height"] for p in parts])
            widths = np.concatenate([p["image/width"] for p in parts])
            from kerascnn.data.images import MAX_IMAGE_PIXELS

            sane = (heights >= 0).all() and (widths >= 0).all() and \
                (heights.astype(object) * widths.astype(object) <= MAX_IMAGE_PIXELS).all()
            if len(lab) == sum(counts) and not (lab < 0).any() and sane:   # else the per-shard pass names it
                text = np.concatenate([p["image/class/text"] for p in parts])
                texts = {}
                for k, j in zip(*np.unique(lab, return_index=True)):   # the first text of each label
                    if text[j]:
                        texts[int(k)] = text[j].decode("utf-8", "replace")
                sizes = list(zip(np.concatenate([p["image/height"] for p in parts]).tolist(),
                                 np.concatenate([p["image/width"] for p in parts]).tolist()))
                ys = np.split(lab, np.cumsum(counts)[:-1])
                return ys, texts, sizes, counts
    ys, texts, sizes, counts = [], {}, [], []    # something is wrong: the per-shard pass names the shard
    for f in shards:
        y, t, s = _label_pass(f)
        ys.append(y)
        counts.append(len(y))
        sizes.extend(s)
        for k, v in t.items():
            texts.setdefault(k, v)
    return ys, texts, sizes, counts


def _sample_shapes(files: list, per_file: int = 2) -> list:
    """(h, w, channels) of the first records of up to 16 shards (decoded: the images' own shapes)."""
    import tensorflow as tf

    spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string)}
    out = []
    for f in files[:16]:
        for i, rec in enumerate(tf.data.TFRecordDataset(str(f)).take(per_file)):
            try:
                encoded = tf.io.parse_single_example(rec, spec)["image/encoded"]
                safe_read.check_encoded(encoded.numpy(), f"{f}: record {i}")    # no bomb is decoded
                img = tf.io.decode_image(encoded, expand_animations=False)
            except (tf.errors.InvalidArgumentError, ValueError) as e:
                raise DataError(f"{f}: no readable image/encoded ({e.__class__.__name__}: {tf_cause(e)[:70]})") from None
            h, w, c = img.shape
            out.append((h, w, 3 if c >= 3 else 1))
    return out


def scan(path: Path, seed: int, policy: str = "stop"):
    """TFRecord ``--data`` -> (x_train RecordImages, y_train, x_test RecordImages, y_test, class names);
    the same splits (and label order: ascending record index) as the in-memory path."""
    from kerascnn import data as D
    from kerascnn.data import formats

    train, test = formats.tfrecord_files(path)
    shards = train + test
    safe_read.check_shards(shards)      # every record's claimed length, before TensorFlow reads one
    ys, texts, sizes, counts = _label_pass_all(shards)
    n_tr = sum(counts[:len(train)])
    if n_tr == 0:
        raise DataError(f"{train[0]}: no records")
    y = np.concatenate(ys).astype(np.int64)
    shapes = _sample_shapes([f for f, c in zip(shards, counts) if c])
    channels = Counter(s[2] for s in shapes).most_common(1)[0][0]
    known = [s for s in sizes if s[0] > 0 and s[1] > 0]
    size = (Counter(known).most_common(1)[0][0] if len(known) == len(sizes)
            else Counter(s[:2] for s in shapes).most_common(1)[0][0])
    total_bytes = sum(Path(f).stat().st_size for f in shards)
    window = int(np.clip(SHUFFLE_BYTES // max(1, total_bytes // max(1, len(y))), MIN_WINDOW, MAX_WINDOW))
    names = safe_read.names_from_texts(texts)
    whole = RecordImages([str(f) for f in shards], counts, np.arange(len(y)), tuple(int(v) for v in size),
                         int(channels), window=window, on_bad=policy)
    D.check_labels(path, {"labels": y}, names)     # before the split counts classes
    if test:
        i_tr, i_te = np.arange(n_tr), np.arange(n_tr, len(y))
    else:
        i_tr, _, i_te, _ = D.split_validation(np.arange(n_tr), y[:n_tr], 0.2, seed)
    x_tr, x_te = whole.subset(i_tr), whole.subset(i_te)
    D.check_labels(path, {"y_train": y[x_tr.idx], "y_test": y[x_te.idx]}, names)
    return x_tr, y[x_tr.idx], x_te, y[x_te.idx], names


# --------------------------------------------------------------------------- worker policy
def policy(n_shards: int, workers: int) -> tuple:
    """("file" | "data", reason): by file when every worker gets at least one shard."""
    if workers <= 1:
        return "file", ""
    if n_shards >= workers:
        return "file", f"sharded by file over {workers} workers"
    return "data", (f"sharded by record over {workers} workers ({n_shards} shard file"
                    f"{'s' if n_shards != 1 else ''} < {workers} workers: every worker reads every shard)")


def file_shares(order, count: int) -> list:
    """Worker i's shard files of one epoch: ``order[i::count]`` (AutoShardPolicy.FILE)."""
    return [order[i::count] for i in range(count)]


# --------------------------------------------------------------------------- decoding
def _decoder(x: RecordImages):
    """tf function: a batch of serialized records -> (float32 (B, h, w, channels) scaled as
    ``prepare_images``, int64 labels). Each image is decoded (JPEG with PIL's accurate IDCT, as the
    folder stream) and brought to the raw size and channel count as the in-memory ``_stack`` does,
    in parallel within the batch (``tf.map_fn``); then the batch is converted at once
    (``stream._decoder``'s conversions: luminance, resize, scale, gray -> RGB)."""
    import tensorflow as tf

    from kerascnn import data as D
    from kerascnn.data import stream
    from kerascnn.data.prepare import resize

    h, w = x.size
    raw_h, raw_w = x.raw_size
    gray = x.raw_channels == 3 and x.channels == 1
    c_mid = 1 if gray else x.raw_channels
    shrink = bool(raw_h > h or raw_w > w)
    spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
            "image/class/label": tf.io.FixedLenFeature([], tf.int64)}
    luma64 = tf.constant([0.299, 0.587, 0.114], tf.float64)

    def conform_size(img):  # PIL bilinear, as the in-memory _stack does for odd sizes
        out = tf.numpy_function(lambda a: D._conform(a, (raw_h, raw_w), x.raw_channels), [img], tf.uint8,
                                stateful=False)
        out.set_shape((raw_h, raw_w, x.raw_channels))
        return out

    def one(encoded):   # uint8 (raw_h, raw_w, raw_channels), as formats._read_shards + _stack make it
        img = tf.cond(tf.io.is_jpeg(encoded),
                      lambda: tf.io.decode_jpeg(encoded, dct_method="INTEGER_ACCURATE"),
                      lambda: tf.io.decode_image(encoded, expand_animations=False))   # uint8 (16-bit scaled)
        c = tf.shape(img)[-1]
        if x.raw_channels == 3:
            img = tf.cond(c >= 3, lambda: img[..., :3], lambda: tf.repeat(img[..., :1], 3, axis=-1))
        else:
            img = tf.cond(c >= 3, lambda: tf.cast(tf.clip_by_value(tf.round(
                tf.tensordot(tf.cast(img[..., :3], tf.float64), luma64, 1)), 0, 255), tf.uint8)[..., None],
                lambda: img[..., :1])
        same = tf.logical_and(tf.equal(tf.shape(img)[0], raw_h), tf.equal(tf.shape(img)[1], raw_w))
        return tf.cond(same, lambda: tf.ensure_shape(img, (raw_h, raw_w, x.raw_channels)), lambda: conform_size(img))

    out_spec = tf.TensorSpec((raw_h, raw_w, x.raw_channels), tf.uint8)

    def decode(recs):
        ex = tf.io.parse_example(recs, spec)
        ok = tf.numpy_function(safe_read.headers_ok, [ex["image/encoded"]], tf.bool, stateful=False)
        with tf.control_dependencies([tf.debugging.assert_equal(ok, True, message="refused")]):   # no bomb
            xb = tf.map_fn(one, ex["image/encoded"], fn_output_signature=out_spec,
                           parallel_iterations=stream.PARALLEL_FILES)
        xb = tf.cast(xb, tf.float32)
        if gray:   # RGB -> gray before resizing (as prepare_images)
            xb = stream._luma(xb)
        if (raw_h, raw_w) != (h, w):
            xb = resize(xb, (h, w), antialias=shrink)
        xb = xb * np.float32(x.pixel_scale)
        if c_mid != x.channels:       # gray -> RGB after resizing
            xb = tf.repeat(xb[..., :1], x.channels, axis=-1)
        return xb, ex["image/class/label"]

    return decode


def _records(x: RecordImages, files, cycle: int = CYCLE, with_index: bool = True):
    """(global index, serialized record) of ``files`` (a tensor of shard indices), interleaved
    ``cycle`` shards at a time, deterministically; only the records of the split ``x``.
    ``with_index`` False: the records alone, and when every record of the shards holding the split
    belongs to it (train shards beside test shards), no per-record index or filter at all."""
    import tensorflow as tf

    paths = tf.constant(list(x.shards))
    offsets = tf.constant(np.concatenate([[0], np.cumsum(x.counts)]).astype(np.int64))
    total = int(sum(x.counts))
    mask = np.zeros(total, bool)
    mask[np.asarray(x.idx, np.int64)] = True
    keep = tf.constant(mask)
    whole = int(sum(x.counts[i] for i in x.shards_holding())) == len(x)

    if not with_index and whole:
        return tf.data.Dataset.from_tensor_slices(files).interleave(
            lambda s: tf.data.TFRecordDataset(safe_read.verified_path(paths[s])), cycle_length=cycle, block_length=1,
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def one_shard(s):   # opened only if still the file the scan checked (a shard replaced mid-run is never read)
        return tf.data.TFRecordDataset(safe_read.verified_path(paths[s])).enumerate().map(
            lambda i, r: (offsets[s] + i, r))

    ds = tf.data.Dataset.from_tensor_slices(files).interleave(
        one_shard, cycle_length=cycle, block_length=1, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.filter(lambda g, r: keep[g])
    return ds if with_index else ds.map(lambda g, r: r)


def _windows(x: RecordImages, seed: int, epoch, worker: tuple, batch_size: int):
    """(policy, the epoch's windows of records, each permuted by its (seed, epoch, window) shuffle)."""
    import tensorflow as tf

    from kerascnn import data as D

    index, count = worker
    holding = np.asarray(x.shards_holding(), np.int64)
    how, _ = policy(len(holding), count)
    order = tf.gather(tf.constant(holding), D.epoch_order(len(holding), seed, epoch))
    files = order[index::count] if how == "file" else order
    key = tf.stack([tf.constant(int(seed), tf.int64), tf.cast(epoch, tf.int64)])

    def permute(j, recs):
        n = tf.shape(recs)[0]
        p = tf.random.experimental.stateless_shuffle(tf.range(n), seed=key * [1, 1 << 32] + [0, j])
        return tf.gather(recs, p)

    return how, _records(x, files, with_index=False).batch(x.window).enumerate().map(permute)


def epoch_records(x: RecordImages, seed: int, epoch, worker: tuple = (0, 1), batch_size: int = 1):
    """Epoch ``epoch``'s records for ``worker`` as (batch index in the epoch, serialized record):
    ``steps * batch_size // count`` of them (``steps = len(x) // batch_size``), in the order the
    module docstring describes."""
    import tensorflow as tf

    index, count = worker
    steps, share = len(x) // batch_size, batch_size // count
    how, ds = _windows(x, seed, epoch, worker, batch_size)
    ds = ds.unbatch()
    if how == "file":
        ds = ds.repeat().take(steps * share).enumerate().map(lambda p, r: (p // share, r))
    else:   # every worker the whole epoch, each keeps its slice of every global batch (before decoding)
        ds = ds.take(steps * batch_size).enumerate()
        if count > 1:
            ds = ds.filter(lambda p, r: tf.equal((p % batch_size) // share, index))
        ds = ds.map(lambda p, r: (p // batch_size, r))
    return ds


def epoch_batches(x: RecordImages, seed: int, epoch, worker: tuple = (0, 1), batch_size: int = 1):
    """``epoch_records`` as (batch index, the ``batch_size // count`` records of that batch), cut
    from the permuted windows by ``rebatch`` (no ``tf.data`` element per record: the first batch
    comes after one window is read, and a third sooner)."""
    index, count = worker
    steps, share = len(x) // batch_size, batch_size // count
    if count > 1 and policy(len(x.shards_holding()), count)[0] == "data":
        return epoch_records(x, seed, epoch, worker, batch_size).batch(share, drop_remainder=True).map(
            lambda i, r: (i[0], r))
    how, ds = _windows(x, seed, epoch, worker, batch_size)
    ds = ds.repeat() if how == "file" else ds
    return ds.rebatch(share, drop_remainder=True).take(steps).enumerate()


def stream_dataset(x: RecordImages, batch_size: int, seed: int, first_epoch: int, epochs: int,
                   augment: bool = False, worker: tuple = (0, 1), first_step: int = 0):
    """Batches of ``batch_size // count`` (float32 images, int64 labels) for epochs
    ``first_epoch`` .. ``epochs - 1``; augmentation keyed by (seed, epoch, batch index) as in memory."""
    import tensorflow as tf

    from kerascnn import data as D
    from kerascnn.errors import ConfigError

    n = len(x)
    if n // batch_size < 1:
        raise ConfigError(f"batch size {batch_size} is larger than the {n} training images")
    if worker[1] > 1 and batch_size % worker[1]:
        raise ConfigError(f"batch size {batch_size} must be divisible by the {worker[1]} workers")
    decode, guard = _decoder(x), _guard(x)
    augmenter = D._augmenter(tuple(x.size) + (x.channels,), seed, worker) if augment else None

    def per_epoch(epoch):
        return epoch_batches(x, seed, epoch, worker, batch_size).map(lambda i, r: (epoch, i, r))

    def fast(epoch, i, recs):
        return (epoch, i) + tuple(decode(recs))

    def slow(epoch, i, recs):   # a batch with a record that does not decode: its other images fill its place
        return guard.salvage(recs, lambda r: tuple(t[0] for t in decode(r[None])), _specs(x), epoch, fill=True).map(
            lambda used, xb, yb: (epoch, i, xb, yb))

    def batch(epoch, i, xb, yb):
        return (augmenter(epoch, i, xb) if augmenter else xb), yb

    ds = safe_read.guarded_batches(tf.data.Dataset.range(first_epoch, epochs).flat_map(per_epoch)
                                     .skip(first_step), fast, slow)   # read, not decoded
    return ds.map(batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


def _specs(x: RecordImages) -> list:
    import tensorflow as tf

    return [tf.TensorSpec(tuple(x.size) + (x.channels,), tf.float32), tf.TensorSpec((), tf.int64)]


def _guard(x: RecordImages, on_bad: str | None = None):
    """Names a record that fails to decode by shard and record index (found by its bytes)."""
    def describe(rec) -> str:
        found = safe_read.locate_record(x.shards, rec)
        name = f"{found[0]}: record {found[1]}" if found else f"{x.shards[0]} (or another shard): a record"
        try:
            from tensorflow.core.example import example_pb2

            ex = example_pb2.Example.FromString(bytes(rec))
            return safe_read.diagnose_image(ex.features.feature["image/encoded"].bytes_list.value[0], name)
        except Exception as e:  # noqa: BLE001  (a record that does not parse)
            return f"{name}: no readable image/encoded ({e.__class__.__name__})"

    return safe_read.Guard(describe, on_bad or x.on_bad, x.bad, name=str(x.shards[0]) if x.shards else "the stream")


def eval_dataset(x: RecordImages, batch_size: int, strict: bool = False):
    """Batches in record order (ascending global index: the order of the split's labels). A record
    that does not decode stops with one line naming it (shard, record index); with ``x.on_bad``
    "skip" and not ``strict`` it is left out, with its label."""
    import tensorflow as tf

    holding = tf.constant(np.asarray(x.shards_holding(), np.int64))
    decode, guard = _decoder(x), _guard(x, "stop" if strict else None)

    def slow(recs):
        return guard.salvage(recs, lambda r: tuple(t[0] for t in decode(r[None])), _specs(x), -1, fill=False).map(
            lambda used, xb, yb: (xb, yb))

    ds = _records(x, holding, cycle=1, with_index=False).batch(batch_size)
    ds = safe_read.guarded_batches(ds, decode, slow)
    opts = tf.data.Options()   # distributed evaluation: split by batch as for every other source, never by file
    opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.prefetch(tf.data.AUTOTUNE).with_options(opts)
