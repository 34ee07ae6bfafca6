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
  (Python, in the same call that reads or logs a chunk of items), so nothing larger than
  ``MAX_IMAGE_PIXELS`` is decoded.
* ``Guard``: images whose decoding fails in ``tf.data`` (corrupt body, a file that changed, a
  refused read) are dropped with ``ignore_errors`` and found again by their position in the
  stream (a logged position -> id map and a ``scan`` over the survivors): ``--bad-files stop``
  ends the run with one line naming the file (or shard and record index); ``skip`` lists it in
  the stream's ``bad`` list (the run's ``bad_files.txt``) and the stream goes on. The decision is
  a function of the files' contents only, so the (seed, epoch) order of the remaining images
  and an exact resume stay deterministic.
"""
from __future__ import annotations

import os
import stat
import struct
import threading
from pathlib import Path

import numpy as np

from kerascnn.errors import DataError

MAX_FILE_BYTES = 1 << 30      # one image file, or one TFRecord record, read while training (1 GiB)
CHUNK = 64                    # items read / checked / logged per Python call in a stream (amortises the call)
# a stream whose items may be dropped cannot use tf.data's fused map-and-batch: its batches are
# copied together in parallel instead
PARALLEL_BATCH = {"num_parallel_calls": -1, "deterministic": True}


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
            pos += 12 + length + 4
            if pos > size:
                raise DataError(f"{path}: corrupt TFRecord file (record {n} claims {length:,} bytes, past the end "
                                f"of the file)")
            fh.seek(pos, os.SEEK_SET)
            n += 1
    _IDENTITY[str(path)] = _identity(st)
    return n


def check_shards(files) -> list:
    """``check_tfrecord`` for every shard; their record counts."""
    return [check_tfrecord(f) for f in files]


_CHANGED = {}      # str(path) -> the one line: a shard that changed after check_tfrecord (never read then)


def _verify(path: bytes) -> bytes:
    name = path.decode("utf-8", "surrogateescape")
    try:
        with open_regular(name, limit=1 << 62, what="TFRecord") as fh:
            now = _identity(os.fstat(fh.fileno()))
    except DataError as e:
        _CHANGED.setdefault(name, str(e))
        raise
    known = _IDENTITY.get(name)
    if known is not None and known != now:
        _CHANGED.setdefault(name, f"{name}: changed since kerascnn checked it (size, time or inode); stop writing "
                                  f"shards that a run reads, or start the run again")
        raise DataError(_CHANGED[name])
    return path


def changed(paths) -> str | None:
    """The one line about the first of ``paths`` that ``verified_path`` refused to open, or None. (The
    stream drops what fails to read, so this is how such a refusal still stops the run.)"""
    return next((_CHANGED[str(p)] for p in paths if str(p) in _CHANGED), None)


def verified_path(path):
    """tf op: ``path`` (a scalar string tensor) after checking, when the stream opens the shard,
    that it is still the regular file ``check_tfrecord`` checked."""
    import tensorflow as tf

    out = tf.numpy_function(_verify, [path], tf.string, stateful=True)
    out.set_shape(())
    return out


def read_record(path, index: int) -> bytes:
    """Record ``index`` of a TFRecord file (walks the length headers; for naming a bad record)."""
    with open_regular(path, limit=1 << 62, what="TFRecord") as fh:
        for _ in range(index):
            (length,) = struct.unpack("<Q", fh.read(12)[:8])
            fh.seek(length + 4, os.SEEK_CUR)
        (length,) = struct.unpack("<Q", fh.read(12)[:8])
        if length > MAX_FILE_BYTES:
            raise DataError(f"{path}: record {index} claims {length:,} bytes")
        return fh.read(length)


def check_record_fields(path, first: int, labels, heights, widths, missing: int) -> None:
    """One batch of a shard's parsed records (record ``first`` onwards): a label that is missing
    or negative, or an ``image/height`` x ``image/width`` beyond ``MAX_IMAGE_PIXELS`` (the size a
    streamed run would decode to), is one ``DataError`` naming the shard and record."""
    from kerascnn.data.images import MAX_IMAGE_PIXELS

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
        w, h = struct.unpack("<HH", head[6:10])
    elif head[:2] == b"BM" and len(head) >= 26:
        w, h = struct.unpack("<ii", head[18:26])
    elif head[:2] == b"\xff\xd8":
        return _jpeg_pixels(data)
    else:
        return 0
    return abs(int(w)) * abs(int(h))


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
    limit = _max_pixels()
    return np.array([image_pixels(d) <= limit for d in datas], bool)


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
    return data, image_pixels(data) <= _max_pixels()


def _max_pixels() -> int:
    from kerascnn.data.images import MAX_IMAGE_PIXELS

    return MAX_IMAGE_PIXELS


# --------------------------------------------------------------------------- bad items at decode time
def diagnose_image(data: bytes, name: str) -> str:
    """Why ``data`` (an encoded image) cannot be used: ``"NAME: reason"`` (PIL's header check and
    decode, as the scan would say); a generic reason when PIL reads it but TensorFlow did not."""
    import io

    from kerascnn.data.images import _check_image_header, _decode, _open_header

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
        return f"{name}: not a readable image ({e.__class__.__name__}: {str(e)[:80]})"
    return f"{name}: TensorFlow could not decode it"


def check_encoded(data: bytes, name: str) -> None:
    """Refuse (one line naming ``name``) an encoded image whose header claims more than
    ``MAX_IMAGE_PIXELS``, before anything decodes it (PIL reads the header only)."""
    import io

    from kerascnn.data.images import _check_image_header, _open_header

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


class Guard:
    """The items one stream dropped at decode time, named and handled by ``on_bad``.

    ``describe(id) -> "name: reason"`` says what is wrong with item ``id``; ``bad`` (a list the
    caller keeps, e.g. ``FileImages.bad``) receives the lines with ``skip``; with ``stop`` the
    first one is raised (``DataError`` inside ``tf.data``: the CLI shows its one line)."""

    KEEP_EPOCHS = 4

    def __init__(self, describe, on_bad: str, bad: list, fatal=None, name: str = "the stream"):
        self.describe, self.on_bad, self.bad, self.name = describe, on_bad, bad, name
        self.fatal = fatal or (lambda: None)      # -> a line that stops the stream whatever on_bad says
        self._ids = {}       # epoch -> int64 array: position in the stream -> id
        self._lock = threading.Lock()

    def log(self, epoch, positions, ids):
        with self._lock:
            epoch = int(epoch)
            arr = self._ids.get(epoch)
            top = int(positions.max()) + 1 if len(positions) else 0
            if arr is None or len(arr) < top:
                grown = np.full(max(top, 2 * (0 if arr is None else len(arr))), -1, np.int64)
                if arr is not None:
                    grown[:len(arr)] = arr
                arr = grown
                self._ids[epoch] = arr
            arr[positions] = ids
            for old in sorted(self._ids)[:-self.KEEP_EPOCHS]:
                del self._ids[old]
        return np.bool_(True)

    def report(self, epoch, first, stop) -> np.bool_:
        """Positions ``first``..``stop - 1`` of epoch ``epoch`` (``stop`` -1: to the last logged) were dropped."""
        with self._lock:
            arr = self._ids.get(int(epoch), np.zeros(0, np.int64))
            if int(stop) < 0:
                logged = np.nonzero(arr >= 0)[0]
                stop = int(logged[-1]) + 1 if len(logged) else 0
            ids = [int(i) for i in arr[int(first):int(stop)] if i >= 0]
        for i in ids:
            line = self.describe(i)
            if self.on_bad != "skip":
                raise DataError(line)
            if line not in self.bad:
                self.bad.append(line)
        return self.check()

    def report_many(self, epoch, firsts, stops) -> np.bool_:
        for first, stop in zip(firsts, stops):
            self.report(epoch, first, stop)
        return self.check()

    def check(self) -> np.bool_:
        line = self.fatal()
        if line:
            raise DataError(line)
        return np.bool_(True)

    # ---- graph pieces
    def chunked(self, ds, epoch, graph_fn, work, types):
        """(position, id, *values) elements -> ``CHUNK`` at a time: ``graph_fn`` (batched values ->
        batched values, in the graph; None: as they are), then ONE Python call ``work(ids,
        *values)`` -> arrays of ``types`` (the last: an ok flag per item) that also logs the
        positions -> (position, id, *values, *work's outputs) one at a time."""
        import tensorflow as tf

        def call(p, ids, *values):
            if graph_fn is not None:
                p, ids, *values = graph_fn(p, ids, *values)

            def py(e, ps, ks, *vs):
                self.log(e, ps, ks)
                return work(ks, *vs)

            out = tf.numpy_function(py, [epoch, p, ids, *values], list(types), stateful=True)
            for o in out:
                o.set_shape(ids.shape)
            return (p, ids, *values, *out)

        return ds.batch(CHUNK).map(call, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()

    def survivors(self, ds, epoch, empty):
        """``ds``: (position, id, *values) after a map whose errors were ignored -> (id, *values)
        with every dropped position reported, up to the last (an end marker follows the items):
        for streams read to the end, such as evaluation."""
        import tensorflow as tf

        end = tf.data.Dataset.from_tensors((tf.constant(-1, tf.int64), tf.constant(-1, tf.int64)) + tuple(empty))

        @tf.autograph.experimental.do_not_convert
        def step(last, e):
            p = e[0]
            gap = tf.logical_or(p < 0, p > last + 1)
            ok = tf.cond(gap, lambda: tf.numpy_function(self.report, [epoch, last + 1, p], tf.bool, stateful=True),
                         lambda: tf.constant(True))
            with tf.control_dependencies([ok]):      # on the id only: images pass through uncopied
                return tf.where(p < 0, last, p), (tf.identity(e[1]),) + tuple(e[2:])

        @tf.autograph.experimental.do_not_convert
        def real(i, *values):
            return i >= 0

        return ds.concatenate(end).scan(tf.constant(-1, tf.int64), step).filter(real)

    def check_batches(self, ds, epoch, steps: int):
        """One epoch's batches (positions, *rest) -> (*rest): the positions the batch's items had
        in the decode stream (restarting at 0 on each repeat) show which items before them were
        dropped; they are reported here, once per batch. Items dropped after the last one the
        epoch uses do not matter, unless the epoch comes out short of ``steps`` batches (more
        items failed than the stream could replace): then the rest is reported and the run stops."""
        import tensorflow as tf

        end = tf.data.Dataset.from_tensors(tuple(         # an end marker shaped like a batch: positions -1
            tf.fill(s.shape, tf.constant(-1, s.dtype)) if i == 0 else tf.zeros(s.shape, s.dtype)
            for i, s in enumerate(ds.element_spec)))

        def short(e, count, last):
            self.report(e, last + 1, -1)          # the failures at the end (stop: raises naming the first)
            raise DataError(f"{self.name}: epoch {int(e) + 1} has only {int(count)} of its {steps} batches of "
                            f"images that decode; too many bad files ({len(self.bad)} listed)")

        @tf.autograph.experimental.do_not_convert
        def step(state, batch):
            last, count = state
            pos = batch[0]
            marker = pos[0] < 0
            prev = tf.concat([[last], pos[:-1]], 0)
            prev = tf.where(pos <= prev, tf.constant(-1, tf.int64), prev)      # a repeat starts again at 0
            gap = tf.logical_and(pos > prev + 1, tf.logical_not(marker))
            ok = tf.cond(tf.reduce_any(gap), lambda: tf.numpy_function(
                self.report_many, [epoch, tf.boolean_mask(prev + 1, gap), tf.boolean_mask(pos, gap)], tf.bool,
                stateful=True), lambda: tf.numpy_function(self.check, [], tf.bool, stateful=True))
            ok = tf.cond(tf.logical_and(marker, count < steps), lambda: tf.numpy_function(
                short, [epoch, count, last], tf.bool, stateful=True), lambda: ok)
            with tf.control_dependencies([ok]):      # on the ids only: images pass through uncopied
                out = (tf.logical_not(marker), tf.identity(batch[1])) + tuple(batch[2:])
            return (tf.where(marker, last, pos[-1]), count + 1), out

        @tf.autograph.experimental.do_not_convert
        def real(keep, *values):
            return keep

        @tf.autograph.experimental.do_not_convert
        def strip(keep, *values):
            return values

        init = (tf.constant(-1, tf.int64), tf.constant(0, tf.int64))
        return ds.concatenate(end).scan(init, step).filter(real).map(strip)
