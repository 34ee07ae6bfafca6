"""Streaming TFRecord shards (``image/encoded`` + ``image/class/label``, as ``kerascnn shards`` writes).

``count_records`` counts a shard's records from their length headers alone (seeks, reads 12 bytes
per record: what ``--stream auto`` needs to estimate the decoded size). ``scan`` then makes one
label pass (only ``image/class/label``, ``image/class/text`` and ``image/height``/``width`` are
parsed, nothing is decoded; a corrupt shard is named here) and returns a ``RecordImages`` per
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

from kerascnn.errors import DataError

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


def _label_pass(f: Path):
    """(labels, {label: text}, [(h, w)]) of one shard; nothing decoded."""
    import tensorflow as tf

    spec = {"image/class/label": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
            "image/class/text": tf.io.FixedLenFeature([], tf.string, default_value=b""),
            "image/height": tf.io.FixedLenFeature([], tf.int64, default_value=0),
            "image/width": tf.io.FixedLenFeature([], tf.int64, default_value=0)}
    labels, texts, sizes = [], {}, []
    try:
        ds = tf.data.TFRecordDataset(str(f)).batch(4096).map(lambda s: tf.io.parse_example(s, spec))
        for ex in ds.as_numpy_iterator():
            lab = ex["image/class/label"]
            if (lab < 0).any():
                i = sum(len(x) for x in labels) + int(np.argmax(lab < 0))
                raise DataError(f"{f}: record {i}: no image/class/label")
            labels.append(lab)
            for k, j in zip(*np.unique(lab, return_index=True)):   # the first text of each label
                t = ex["image/class/text"][j]
                if t and int(k) not in texts:
                    texts[int(k)] = t.decode("utf-8", "replace")
            sizes.extend(zip(ex["image/height"].tolist(), ex["image/width"].tolist()))
    except tf.errors.DataLossError as e:
        raise DataError(f"{f}: corrupt TFRecord file ({str(e).splitlines()[0][:80]})") from None
    except tf.errors.OpError as e:
        raise DataError(f"{f}: cannot read ({str(e).splitlines()[0][:80]})") from None
    return (np.concatenate(labels) if labels else np.zeros(0, np.int64)), texts, sizes


def _sample_shapes(files: list, per_file: int = 2) -> list:
    """(h, w, channels) of the first records of up to 16 shards (decoded: the images' own shapes)."""
    import tensorflow as tf

    spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string)}
    out = []
    for f in files[:16]:
        for rec in tf.data.TFRecordDataset(str(f)).take(per_file):
            try:
                img = tf.io.decode_image(tf.io.parse_single_example(rec, spec)["image/encoded"],
                                         expand_animations=False)
            except (tf.errors.InvalidArgumentError, ValueError) as e:
                from kerascnn.data import _short

                raise DataError(f"{f}: no readable image/encoded ({_short(e, 70)})") from None
            h, w, c = img.shape
            out.append((h, w, 3 if c >= 3 else 1))
    return out


def scan(path: Path, seed: int):
    """TFRecord ``--data`` -> (x_train RecordImages, y_train, x_test RecordImages, y_test, class names);
    the same splits (and label order: ascending record index) as the in-memory path."""
    from kerascnn import data as D
    from kerascnn.data import formats

    train, test = formats.tfrecord_files(path)
    shards = train + test
    ys, texts, sizes, counts = [], {}, [], []
    for f in shards:
        y, t, s = _label_pass(f)
        ys.append(y)
        counts.append(len(y))
        sizes.extend(s)
        for k, v in t.items():
            texts.setdefault(k, v)
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
    names = None
    if texts and set(texts) == set(range(max(texts) + 1)):
        names = [texts[i] for i in range(max(texts) + 1)]
    whole = RecordImages([str(f) for f in shards], counts, np.arange(len(y)), tuple(int(v) for v in size),
                         int(channels), window=window)
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
    """tf function: serialized record -> (float32 (h, w, channels) scaled as ``prepare_images``, label)."""
    import tensorflow as tf

    from kerascnn import data as D

    h, w = x.size
    raw_h, raw_w = x.raw_size
    c_mid = x.channels if (x.raw_channels != x.channels and x.channels == 1) else x.raw_channels
    shrink = bool(raw_h > h or raw_w > w)
    spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
            "image/class/label": tf.io.FixedLenFeature([], tf.int64)}
    luma64 = tf.constant([0.299, 0.587, 0.114], tf.float64)
    luma = tf.constant([0.299, 0.587, 0.114], tf.float32)

    def conform_size(img):  # PIL bilinear, as the in-memory _stack does for odd sizes
        out = tf.numpy_function(lambda a: D._conform(a, (raw_h, raw_w), x.raw_channels), [img], tf.uint8,
                                stateful=False)
        out.set_shape((raw_h, raw_w, x.raw_channels))
        return out

    def decode(rec):
        ex = tf.io.parse_single_example(rec, spec)
        img = tf.io.decode_image(ex["image/encoded"], expand_animations=False)   # uint8 (16-bit scaled)
        c = tf.shape(img)[-1]
        if x.raw_channels == 3:
            img = tf.cond(c >= 3, lambda: img[..., :3], lambda: tf.repeat(img[..., :1], 3, axis=-1))
        else:
            img = tf.cond(c >= 3, lambda: tf.cast(tf.clip_by_value(tf.round(
                tf.tensordot(tf.cast(img[..., :3], tf.float64), luma64, 1)), 0, 255), tf.uint8)[..., None],
                lambda: img[..., :1])
        same = tf.logical_and(tf.equal(tf.shape(img)[0], raw_h), tf.equal(tf.shape(img)[1], raw_w))
        img = tf.cond(same, lambda: tf.ensure_shape(img, (raw_h, raw_w, x.raw_channels)), lambda: conform_size(img))
        img = tf.cast(img, tf.float32)
        if c_mid != x.raw_channels:   # RGB -> gray before resizing (as prepare_images)
            img = tf.tensordot(img, luma, 1)[..., None]
        if (raw_h, raw_w) != (h, w):
            img = tf.image.resize(img, (h, w), method="bilinear", antialias=shrink)
        img = img * np.float32(x.pixel_scale)
        if c_mid != x.channels:       # gray -> RGB after resizing
            img = tf.repeat(img[..., :1], x.channels, axis=-1)
        return img, ex["image/class/label"]

    return decode


def _records(x: RecordImages, files, cycle: int = CYCLE):
    """(global index, serialized record) of ``files`` (a tensor of shard indices), interleaved
    ``cycle`` shards at a time, deterministically; only the records of the split ``x``."""
    import tensorflow as tf

    paths = tf.constant(list(x.shards))
    offsets = tf.constant(np.concatenate([[0], np.cumsum(x.counts)]).astype(np.int64))
    total = int(sum(x.counts))
    mask = np.zeros(total, bool)
    mask[np.asarray(x.idx, np.int64)] = True
    keep = tf.constant(mask)

    def one_shard(s):
        return tf.data.TFRecordDataset(paths[s]).enumerate().map(lambda i, r: (offsets[s] + i, r))

    ds = tf.data.Dataset.from_tensor_slices(files).interleave(
        one_shard, cycle_length=cycle, block_length=1, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.filter(lambda g, r: keep[g])


def epoch_records(x: RecordImages, seed: int, epoch, worker: tuple = (0, 1), batch_size: int = 1):
    """Epoch ``epoch``'s records for ``worker`` as (batch index in the epoch, serialized record):
    ``steps * batch_size // count`` of them (``steps = len(x) // batch_size``), in the order the
    module docstring describes."""
    import tensorflow as tf

    from kerascnn import data as D

    index, count = worker
    steps, share = len(x) // batch_size, batch_size // count
    holding = np.asarray(x.shards_holding(), np.int64)
    how, _ = policy(len(holding), count)
    order = tf.gather(tf.constant(holding), D.epoch_order(len(holding), seed, epoch))
    files = order[index::count] if how == "file" else order
    key = tf.stack([tf.constant(int(seed), tf.int64), tf.cast(epoch, tf.int64)])

    def permute(j, recs):
        n = tf.shape(recs)[0]
        p = tf.random.experimental.stateless_shuffle(tf.range(n), seed=key * [1, 1 << 32] + [0, j])
        return tf.gather(recs, p)

    ds = _records(x, files).map(lambda g, r: r)
    ds = ds.batch(x.window).enumerate().map(permute).unbatch()
    if how == "file":
        ds = ds.repeat().take(steps * share).enumerate().map(lambda p, r: (p // share, r))
    else:   # every worker the whole epoch, each keeps its slice of every global batch (before decoding)
        ds = ds.take(steps * batch_size).enumerate()
        if count > 1:
            ds = ds.filter(lambda p, r: tf.equal((p % batch_size) // share, index))
        ds = ds.map(lambda p, r: (p // batch_size, r))
    return ds


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
    share = batch_size // worker[1]
    decode = _decoder(x)
    augmenter = D._augmenter(tuple(x.size) + (x.channels,), seed, worker) if augment else None

    def per_epoch(epoch):
        return epoch_records(x, seed, epoch, worker, batch_size).map(lambda i, r: (epoch, i, r))

    def item(epoch, i, r):
        img, label = decode(r)
        return epoch, i, img, label

    def finish(epoch, i, xb, yb):
        return (augmenter(epoch[0], i[0], xb), yb) if augmenter else (xb, yb)

    ds = tf.data.Dataset.range(first_epoch, epochs).flat_map(per_epoch).skip(first_step * share)  # read, not decoded
    ds = ds.map(item, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(share, drop_remainder=True)
    return ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


def eval_dataset(x: RecordImages, batch_size: int):
    """Batches in record order (ascending global index: the order of the split's labels)."""
    import tensorflow as tf

    holding = tf.constant(np.asarray(x.shards_holding(), np.int64))
    decode = _decoder(x)
    ds = _records(x, holding, cycle=1).map(lambda g, r: decode(r), num_parallel_calls=tf.data.AUTOTUNE,
                                           deterministic=True)
    opts = tf.data.Options()   # distributed evaluation: split by batch as for every other source, never by file
    opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE).with_options(opts)
