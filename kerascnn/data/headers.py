"""The header pass: size, mode and format of every image file, nothing decoded, bad files named.

``read_header`` reads the first bytes of a file once (``os.open``/``os.read``, no PIL object) and
parses plain JPEG (baseline/progressive, 8-bit gray or YCbCr, APP0/COM/DQT/DHT/DRI segments) and
PNG (8-bit gray or RGB; IHDR and a few ancillary chunks, every CRC checked) itself; any other file,
or anything unusual in one of these (EXIF, ICC, Adobe markers, 16-bit, palettes, alpha, a
truncated segment), goes to PIL's lazy open, so what is accepted, refused and reported is PIL's
answer exactly as before: the fast path only takes files PIL reads with the same size and mode.
``header_pass`` checks a list of files in a few threads (file reads release the GIL), in order:
the first bad file in list order is the one named. The available memory for the bomb check is
read once per pass (``guard.available_bytes`` reads /proc and the cgroup files).
"""
from __future__ import annotations

import os
import stat
import zlib
from pathlib import Path

from kerascnn.errors import DataError, first_line

HEAD_BYTES = 1 << 16      # a plain JPEG's markers before the scan, or a PNG's chunks before IDAT, fit here
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
_JPEG_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))
_JPEG_SKIP = frozenset((0xC4, 0xCC, 0xDD, 0xFE))          # DHT, DAC, DRI, COM: read and skipped by PIL too
_PNG_PLAIN = {b"sRGB": 1, b"gAMA": 4, b"pHYs": 9, b"tIME": 0, b"tEXt": 0}   # chunk: the least length PIL parses


def _jpeg(head: bytes):
    """(width, height, mode) of a plain 8-bit gray/RGB JPEG whose segments up to the scan are all in
    ``head`` and are ones PIL reads without surprises; None otherwise (PIL decides)."""
    n, pos, found = len(head), 2, None
    while pos + 4 <= n:
        if head[pos] != 0xFF:
            return None
        marker, length = head[pos + 1], (head[pos + 2] << 8) | head[pos + 3]
        start, end = pos + 4, pos + 2 + length
        if length < 2 or end > n:
            return None
        if marker == 0xDA:                                   # start of scan: PIL stops here
            return found
        if marker in _JPEG_SOF:
            if length < 8 or head[start] != 8 or head[start + 5] not in (1, 3):
                return None
            found = ((head[start + 3] << 8) | head[start + 4], (head[start + 1] << 8) | head[start + 2],
                     "L" if head[start + 5] == 1 else "RGB")
        elif marker == 0xDB:                                 # quantization tables: PIL checks their lengths
            while start < end:
                start += 65 if head[start] < 16 else 129
            if start > end:
                return None
        elif marker == 0xE0:
            if length < 9 and head.startswith(b"JFIF", start):
                return None
        elif marker not in _JPEG_SKIP:                       # EXIF, ICC, MPF, Adobe, ...: PIL reads them
            return None
        pos = end
    return None


def _png(head: bytes):
    """(width, height, mode) of an 8-bit gray/RGB PNG whose chunks before IDAT are all in ``head``,
    plain and with good CRCs (PIL checks them too); None otherwise."""
    if not head.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    n, pos, found = len(head), 8, None
    while pos + 8 <= n:
        length, cid = int.from_bytes(head[pos:pos + 4], "big"), head[pos + 4:pos + 8]
        if cid == b"IDAT":
            return found
        end = pos + 8 + length
        if end + 4 > n or zlib.crc32(head[pos + 8:end], zlib.crc32(cid)) != int.from_bytes(head[end:end + 4], "big"):
            return None
        if cid == b"IHDR":
            if pos != 8 or length < 13 or head[pos + 16] != 8 or head[pos + 17] not in (0, 2) or head[pos + 19]:
                return None
            found = (int.from_bytes(head[pos + 8:pos + 12], "big"), int.from_bytes(head[pos + 12:pos + 16], "big"),
                     "L" if head[pos + 17] == 0 else "RGB")
        elif found is None or length < _PNG_PLAIN.get(cid, 1 << 40):
            return None
        pos = end + 4
    return None


def _fast(path: str):
    """(width, height, mode, format) from the file's first bytes, or None when PIL must look. One
    open, fstat, read (the callers listed the file as a regular one; O_NONBLOCK: a pipe swapped in
    meanwhile is refused, not waited on)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except PermissionError:
        return None     # PIL's open names it, as before
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DataError(f"{path}: not a regular file (a device, pipe or socket); expected an image file")
        if st.st_size == 0:
            raise DataError(f"{path}: empty image file (0 bytes)")
        head = os.read(fd, HEAD_BYTES)
    except OSError:
        return None
    finally:
        os.close(fd)
    if head.startswith(b"\xff\xd8\xff"):
        got = _jpeg(head)
        return (got + ("JPEG",)) if got else None
    if head.startswith(b"\x89PNG"):
        got = _png(head)
        return (got + ("PNG",)) if got else None
    return None


def read_header(path, have: int) -> tuple:
    """(h, w, channels, format, mode) of one image file; a one-line DataError for a bad one
    (not a regular file, empty, unreadable, a decompression bomb). ``have``: available memory."""
    from kerascnn.data import images

    got = _fast(str(path))
    if got is not None:
        w, h, mode, fmt = got
        if w * h > images.MAX_IMAGE_PIXELS or w * h * (1 if mode == "L" else 3) * 2 > have:
            images._check_image_header(Path(path), _Size(w, h, mode), have)
        return h, w, 1 if mode == "L" else 3, fmt, mode
    p = Path(path)
    with images._open_header(p) as im:
        images._check_image_header(p, im, have)
        w, h = im.size
        return h, w, 1 if im.mode in GRAY_MODES else 3, im.format, im.mode


class _Size:
    """What ``images._check_image_header`` reads of a PIL image: size and bands."""

    def __init__(self, w, h, mode):
        self.size, self.mode = (w, h), mode

    def getbands(self):
        return tuple(self.mode)


def _check_one(path, have):
    """(shape, None) or (None, "path: reason")."""
    try:
        return read_header(path, have), None
    except DataError as e:
        return None, str(e)
    except Exception as e:  # noqa: BLE001  (any unreadable header: PIL raises many kinds)
        return None, f"{path}: not a readable image ({e.__class__.__name__}: {first_line(e, 80, '')})"


def header_pass(files: list, policy: str, threads: int | None = None) -> tuple:
    """(kept indices, [(h, w, channels, format, mode)], bad "path: reason" lines), in file order.
    ``policy`` stop: the first bad file (in list order) is a one-line DataError; skip: bad files are
    listed. The files are read by a few threads, in chunks; the memory limit is read once."""
    from kerascnn.guard import available_bytes

    have = available_bytes()
    threads = threads or min(8, os.cpu_count() or 1)
    chunk = 512

    def run(lo):
        out = []
        for f in files[lo:lo + chunk]:
            out.append(_check_one(f, have))
            if policy == "stop" and out[-1][1] is not None:
                break
        return out

    starts = range(0, len(files), chunk)
    if threads > 1 and len(files) > chunk:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(threads) as pool:
            parts = list(pool.map(run, starts))
    else:
        parts = [run(lo) for lo in starts]
    keep, shapes, bad = [], [], []
    for lo, part in zip(starts, parts):
        for j, (shape, err) in enumerate(part):
            if err is not None:
                if policy == "stop":
                    raise DataError(err)
                bad.append(err)
            else:
                keep.append(lo + j)
                shapes.append(shape)
    return keep, shapes, bad
