"""Read-time guards for what kerascnn reads from disk while it trains or evaluates (issue 21).

The scans (``stream.header_pass``, ``records.scan``) check every file before training starts; a
file can change afterwards, and an image body can be corrupt behind a valid header. Here:

* ``open_regular`` / ``read_regular``: a file is read only when the OPENED descriptor is a
  regular file of at most ``MAX_FILE_BYTES`` (``O_NONBLOCK``: opening a FIFO never blocks;
  ``fstat`` after the open: a FIFO, a device or a link to ``/dev/zero`` swapped in mid-epoch is
  refused in one line naming the file, no hang, no unbounded read).
* ``check_tfrecord``: every record's claimed length is checked against the file (and
  ``MAX_FILE_BYTES``) from the length headers alone, before TensorFlow reads any of it (a header
  claiming 2^60 bytes crashes TensorFlow's reader); the file's identity is remembered and
  ``verified_path`` checks it again when the stream opens the shard.
* ``image_pixels``: the pixel count an encoded PNG / JPEG / GIF / BMP claims, from its header
  (Python, in the call that reads a batch's files), so nothing larger than ``MAX_IMAGE_PIXELS``
  is decoded.
* ``Guard`` / ``guarded_batches``: the streams decode one batch per ``tf.data`` element; a batch
  whose decoding fails (a corrupt body, a file that changed, a refused read) is decoded again one
  image at a time, and the images that still fail are named: ``--bad-files stop`` ends the run
  with one line naming the file (or shard and record index); ``skip`` lists it in the stream's
  ``bad`` list (the run's ``bad_files.txt``) and the batch's other images fill its place. Batch
  boundaries and the (seed, epoch) order stay as they are, so a resumed run sees the same batches.
"""
from __future__ import annotations

import os
import stat
import struct
import threading

import numpy as np

from kerascnn.errors import DataError

MAX_FILE_BYTES = 1 << 30      # one image file, or one TFRecord record, read while training (1 GiB)
MAX_IMAGE_PIXELS = 89_478_485  # PIL's own decompression-bomb limit (~ 9,459 x 9,459): no classifier input


# --------------------------------------------------------------------------- files
def open_regular(path, limit: int = MAX_FILE_BYTES, what: str = "image"):
    """A binary file object of ``path`` when the opened descriptor is a regular file of at most
    ``limit`` bytes; else a one-line ``DataError`` naming the file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DataError(f"{path}: not a regular file (a device, pipe or socket); expected an {what} file")
        if st.st_size > limit:
            raise DataError(f"{path}: {st.st_size:,} bytes, more than the {limit:,} kerascnn reads for one {what}")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path, limit: int = MAX_FILE_BYTES, what: str = "image") -> bytes:
    """The bytes of ``path`` (``open_regular``), at most ``limit`` of them (a file that grows is refused)."""
    with open_regular(path, limit, what) as fh:
        size = os.fstat(fh.fileno()).st_size
        data = fh.read(size + 1)            # what fstat says is there (never ``limit``: read() allocates it)
    if len(data) > size:
        raise DataError(f"{path}: grew while kerascnn read it")
    return data


# --------------------------------------------------------------------------- TFRecord shards
_IDENTITY = {}     # str(path) -> (dev, inode, size, mtime_ns) when check_tfrecord passed


def _identity(st) -> tuple:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def check_tfrecord(path, max_record: int = MAX_FILE_BYTES) -> int:
    """Records in one TFRecord file, after checking that every record's claimed length fits in
    the file and in ``max_record`` (length headers only; no payload is read). One-line
    ``DataError`` naming the file and record otherwise. Remembers the file for ``verified_path``."""
    offsets, lengths = [], []
    with open_regular(path, limit=1 << 62, what="TFRecord") as fh:
        st = os.fstat(fh.fileno())
        size, n, pos = st.st_size, 0, 0
        while pos < size:
            head = fh.read(12)
            if len(head) < 12:
                raise DataError(f"{path}: corrupt TFRecord file (truncated record header at byte {pos:,})")
            (length,) = struct.unpack("<Q", head[:8])
            if length > max_record:
                raise DataError(f"{path}: record {n} claims {length:,} bytes, more than the {max_record:,} kerascnn "
                                f"reads for one record (a corrupt or hostile file?)")
            offsets.append(pos + 12)
            lengths.append(length)
            pos += 12 + length + 4
            if pos > size:
                raise DataError(f"{path}: corrupt TFRecord file (record {n} claims {length:,} bytes, past the end "
                                f"of the file)")
            fh.seek(pos, os.SEEK_SET)
            n += 1
    _IDENTITY[str(path)] = _identity(st)
    _LAYOUT[str(path)] = (np.asarray(offsets, np.int64), np.asarray(lengths, np.int64))
    return n


_LAYOUT = {}     # str(path) -> (payload offsets, payload lengths) of a checked shard's records


def locate_record(shards, payload: bytes):
    """(shard, record index) of the record whose payload is ``payload`` among checked ``shards``
    (records of the same length are read and compared: for naming one that failed), else None."""
    payload = bytes(payload)
    for shard in shards:
        offsets, lengths = _LAYOUT.get(str(shard), (None, None))
        if offsets is None:
            continue
        for j in np.nonzero(lengths == len(payload))[0]:
            with open_regular(shard, limit=1 << 62, what="TFRecord") as fh:
                fh.seek(int(offsets[j]))
                if fh.read(len(payload)) == payload:
                    return shard, int(j)
    return None


def check_shards(files) -> list:
    """``check_tfrecord`` for every shard; their record counts."""
    return [check_tfrecord(f) for f in files]


def _verify(path: bytes) -> bytes:
    name = path.decode("utf-8", "surrogateescape")
    with open_regular(name, limit=1 << 62, what="TFRecord") as fh:
        now = _identity(os.fstat(fh.fileno()))
    known = _IDENTITY.get(name)
    if known is not None and known != now:
        raise DataError(f"{name}: changed since kerascnn checked it (size, time or inode); stop writing shards "
                        f"that a run reads, or start the run again")
    return path


def verified_path(path):
    """tf op: ``path`` (a scalar string tensor) after checking, when the stream opens the shard,
    that it is still the regular file ``check_tfrecord`` checked."""
    import tensorflow as tf

    out = tf.numpy_function(_verify, [path], tf.string, stateful=True)
    out.set_shape(())
    return out


def check_record_fields(path, first: int, labels, heights, widths, missing: int) -> None:
    """One batch of a shard's parsed records (record ``first`` onwards): a label that is missing
    or negative, or an ``image/height`` x ``image/width`` beyond ``MAX_IMAGE_PIXELS`` (the size a
    streamed run would decode to), is one ``DataError`` naming the shard and record."""
    labels, heights, widths = (np.asarray(a, np.int64) for a in (labels, heights, widths))
    bad = np.nonzero(labels < 0)[0]
    if len(bad):
        i, v = first + int(bad[0]), int(labels[bad[0]])
        if v == missing:
            raise DataError(f"{path}: record {i}: no image/class/label")
        raise DataError(f"{path}: record {i}: image/class/label is {v}, negative; labels are class indices 0..K-1")
    pixels = heights.astype(object) * widths.astype(object)
    bad = [j for j, (h, w, n) in enumerate(zip(heights, widths, pixels)) if h < 0 or w < 0 or n > MAX_IMAGE_PIXELS]
    if bad:
        j = bad[0]
        raise DataError(f"{path}: record {first + j}: image/height x image/width is {int(heights[j]):,}x"
                        f"{int(widths[j]):,}, beyond the {MAX_IMAGE_PIXELS:,} pixels kerascnn decodes; refused "
                        f"before decoding (a decompression bomb?)")


def names_from_texts(texts: dict):
    """Class names 0..K-1 from ``{label: image/class/text}`` when every label 0..K-1 has one, else
    None; O(len(texts)) whatever the labels (a label of 2^40 never builds a range of 2^40)."""
    if not texts or min(texts) != 0 or max(texts) + 1 != len(texts):
        return None
    return [texts[i] for i in range(len(texts))]


# --------------------------------------------------------------------------- image headers
def image_pixels(data: bytes) -> int:
    """The pixel count the header of an encoded PNG / GIF / BMP / JPEG claims (what TensorFlow's
    decoder would allocate for), from its first bytes; 0 for another format or a header too short
    to say (the decoder then refuses it)."""
    head = bytes(data[:32])
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24:
        w, h = struct.unpack(">II", head[16:24])
    elif head[:3] == b"GIF" and len(head) >= 10:
        return _gif_pixels(data)
    elif head[:2] == b"BM" and len(head) >= 26:
        w, h = struct.unpack("<ii", head[18:26])
    elif head[:2] == b"\xff\xd8":
        return _jpeg_pixels(data)
    else:
        return 0
    return abs(int(w)) * abs(int(h))


def _gif_pixels(data: bytes) -> int:
    """Pixels a GIF costs the decoder: the screen grown to hold every frame, or the frames' sum
    (giflib decodes every frame, each at its own descriptor's size, whatever the screen says)."""
    data = memoryview(data)
    sw, sh, flags = data[6] | data[7] << 8, data[8] | data[9] << 8, data[10] if len(data) > 10 else 0
    i, n, frames = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0), len(data), 0
    while i < n and data[i] != 0x3B:
        if data[i] == 0x2C and i + 10 <= n:          # image descriptor: left, top, width, height, flags
            left, top, w, h = struct.unpack("<HHHH", data[i + 1:i + 9])
            sw, sh, frames = max(sw, left + w), max(sh, top + h), frames + w * h
            i += 10 + (3 << ((data[i + 9] & 7) + 1) if data[i + 9] & 0x80 else 0) + 1   # + LZW code size
        elif data[i] == 0x21:                          # extension: label, then sub-blocks
            i += 2
        else:
            break
        while i < n and data[i]:                       # data sub-blocks up to the 0 terminator
            i += data[i] + 1
        i += 1
    return max(sw * sh, frames)


def _jpeg_pixels(data: bytes) -> int:
    """Width x height of a JPEG's first SOF segment (walks the marker segments), 0 if none."""
    i, n = 2, len(data)
    while i + 9 < n:
        if data[i] != 0xFF:
            return 0
        marker = data[i + 1]
        if marker == 0xFF:          # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return int(w) * int(h)
        i += 2 + length
    return 0


def headers_ok(datas) -> np.ndarray:
    """Whether each encoded image's header claims at most ``MAX_IMAGE_PIXELS`` (nothing decoded)."""
    return np.array([image_pixels(d) <= MAX_IMAGE_PIXELS for d in datas], bool)


_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def read_image_bytes(path) -> tuple:
    """(bytes, True) of an image file that is a regular file of bounded size whose header claims
    at most ``MAX_IMAGE_PIXELS``; (b"", False) otherwise (``diagnose_file`` says why). The
    stream's hot path: ``read_regular``'s checks with bare ``os`` calls."""
    try:
        fd = os.open(path, _FLAGS)
    except OSError:
        return b"", False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_FILE_BYTES:
            return b"", False
        data = os.read(fd, st.st_size + 1)
        while len(data) <= st.st_size:          # a short read (large file, some file systems)
            more = os.read(fd, st.st_size + 1 - len(data))
            if not more:
                break
            data += more
    except OSError:
        return b"", False
    finally:
        os.close(fd)
    if len(data) > st.st_size:                   # grew while read
        return b"", False
    return data, image_pixels(data) <= MAX_IMAGE_PIXELS


# --------------------------------------------------------------------------- bad items at decode time
class Guard:
    """The items of one stream that fail to decode, named and handled by ``on_bad``.

    ``describe(id) -> "name: reason"`` says what is wrong with item ``id`` (a file index, or a
    serialized record); ``bad`` (a list the caller keeps, e.g. ``FileImages.bad``) receives the
    lines with ``skip``; with ``stop`` the first one is raised (a ``DataError`` inside ``tf.data``:
    the CLI shows its one line)."""

    def __init__(self, describe, on_bad: str, bad: list, name: str = "the stream"):
        self.describe, self.on_bad, self.bad, self.name = describe, on_bad, bad, name
        self._lock = threading.Lock()

    def _settle(self, epoch, ids, kept, fill) -> np.ndarray:
        """Python: which of a batch's items to use after decoding them one by one (``kept``: the
        positions that decoded). The others are named (stop: raised) or listed; with ``fill`` the
        survivors are repeated, in order, to fill the batch."""
        kept = np.asarray(kept, np.int64)
        for p in sorted(set(range(len(ids))) - set(kept.tolist())):
            line = self.describe(ids[p].item() if hasattr(ids[p], "item") else ids[p])
            if self.on_bad != "skip":
                raise DataError(line)
            with self._lock:
                if line not in self.bad:
                    self.bad.append(line)
        if not fill:
            return np.arange(len(kept), dtype=np.int64)
        if not len(kept):
            raise DataError(f"{self.name}: no image of a batch of epoch {int(epoch) + 1} decodes (all {len(ids)} are "
                            f"listed as bad); too many bad files to train on")
        return np.resize(np.arange(len(kept), dtype=np.int64), len(ids))

    def salvage(self, ids, load_one, specs, epoch, fill: bool):
        """A one-element dataset: the batch ``ids`` decoded one item at a time (``load_one(id)`` ->
        a tuple of tensors of ``specs``); the items that fail are named or listed (``_settle``) and
        left out, the rest (repeated to the batch's size with ``fill``) as (ids, *outputs)."""
        import tensorflow as tf

        items = tf.data.Dataset.from_tensor_slices(ids).enumerate().map(
            lambda p, k: (p,) + tuple(load_one(k)), num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True).ignore_errors()
        end = tf.data.Dataset.from_tensors((tf.constant(-1, tf.int64),) + tuple(tf.zeros(s.shape, s.dtype)
                                                                                for s in specs))
        n = tf.cast(tf.shape(ids)[0], tf.int64)

        def settle(kept, *outs):
            kept, outs = kept[:-1], [o[:-1] for o in outs]     # without the end marker
            pick = tf.numpy_function(self._settle, [epoch, ids, kept, fill], tf.int64, stateful=True)
            pick.set_shape([None])
            used = tuple(tf.gather(o, pick) for o in [tf.gather(ids, kept)] + outs)
            if fill:
                used = tuple(tf.ensure_shape(u, ids.shape[:1].concatenate(u.shape[1:])) for u in used)
            return used

        return items.concatenate(end).batch(n + 1).take(1).map(settle)


def guarded_batches(inputs, fast, slow):
    """One ``tf.data`` element per batch, as the streams decode: ``fast(*inputs)`` (the batch at
    once; fails as a whole when one item does), or, only for a batch whose fast decode failed,
    ``slow(*inputs)`` (a one-element dataset that decodes it item by item: ``Guard.salvage``).
    Batches run in parallel and come out in order."""
    import tensorflow as tf

    @tf.autograph.experimental.do_not_convert
    def one(*inp):
        return tf.data.Dataset.from_tensors(inp).map(fast).ignore_errors().concatenate(slow(*inp)).take(1)

    return inputs.interleave(one, cycle_length=tf.data.AUTOTUNE, block_length=1,
                             num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
