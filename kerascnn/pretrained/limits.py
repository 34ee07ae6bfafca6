"""Weight files measured from their headers before anything is read into memory (issue 21).

A 7.8 KB ``.h5`` can declare an 8 GB dataset (h5py allocates the whole array, then reads the few
bytes there are, or the fill value), and a sparse ``.safetensors`` file can declare gigabytes of
zeros. Both are refused in one ``WeightsError`` naming the file and the size, before reading:

* ``check_h5_sizes``: every dataset's declared size (shape x item size, from the metadata h5py
  reads without touching the data) must fit in the file when it is stored uncompressed (a weight
  file holds its numbers), and all of them together in half the available memory.
* ``check_safetensors``: the JSON header's tensors must lie inside the file, and their total in
  half the available memory.
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from kerascnn.errors import first_line
from kerascnn.pretrained.base import WeightsError

COMPRESSED_RATIO = 64     # a compressed HDF5 dataset may declare at most this many times the file's size


def _fits(path, declared: int, what: str) -> None:
    from kerascnn.analysis import human_bytes
    from kerascnn.guard import available_bytes

    have = available_bytes()
    if declared * 2 > have:
        raise WeightsError(f"{path}: {what} {human_bytes(declared)} but only {human_bytes(have)} of memory is "
                           f"available; refused before reading")


def check_h5_sizes(path, fileobj=None) -> int:
    """The total bytes the datasets of an HDF5 weight file declare (``fileobj``: its bytes, already
    in memory, e.g. from a ``.keras`` zip), after refusing a file whose datasets cannot be what
    they claim (see the module docstring) or that reads other files (external storage, virtual
    datasets)."""
    import h5py

    from kerascnn.analysis import human_bytes

    size = os.path.getsize(path) if fileobj is None else len(fileobj.getbuffer())
    found, elsewhere = [], []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            if obj.external or obj.is_virtual:
                elsewhere.append(name)
            found.append((name, tuple(int(d) for d in (obj.shape or ())), int(obj.size or 0) * obj.dtype.itemsize,
                          bool(obj.compression or obj.compression_opts or obj.scaleoffset)))

    def visit_link(name, link):     # before anything follows one: a link to a pipe blocks forever
        if isinstance(link, (h5py.ExternalLink, h5py.SoftLink)):
            elsewhere.append(f"{name} (a link)")

    try:
        with h5py.File(path if fileobj is None else fileobj, "r") as f:
            f.visititems_links(visit_link)
            if not elsewhere:
                f.visititems(visit)
    except (OSError, KeyError, ValueError, RuntimeError) as e:
        raise WeightsError(f"cannot read weight file {path}: {first_line(e, 120, '')}") from None
    if elsewhere:
        raise WeightsError(f"{path}: dataset {elsewhere[0][:80]} keeps its data elsewhere (a soft or external link, "
                           f"external or virtual storage); a weight file holds its own numbers, refused")
    for name, shape, declared, compressed in found:
        room = size * (COMPRESSED_RATIO if compressed else 1)
        if declared > room:
            raise WeightsError(f"{path}: dataset {name[:80]} declares {'x'.join(map(str, shape)) or 'a scalar'} = "
                               f"{human_bytes(declared)} in a file of {human_bytes(size)}; refused before reading "
                               f"(a damaged or hostile weight file)")
    total = sum(d for _, _, d, _ in found)
    _fits(path, total, "its datasets declare")
    return total


def check_safetensors(path) -> int:
    """The bytes a ``.safetensors`` file's tensors declare, after checking its header (8-byte
    length + JSON) against the file and the available memory."""
    from kerascnn.analysis import human_bytes

    path = Path(path)
    size = os.path.getsize(path)
    try:
        with open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n > min(size - 8, 100 << 20):
                raise WeightsError(f"{path}: its header claims {n:,} bytes in a file of {size:,}; not a "
                                   f"safetensors file (or a damaged one)")
            header = json.loads(fh.read(n))
    except (OSError, struct.error, ValueError, UnicodeDecodeError) as e:
        raise WeightsError(f"cannot read {path}: not a safetensors file ({e.__class__.__name__})") from None
    except RecursionError:
        raise WeightsError(f"cannot read {path}: its header nests too deeply for a safetensors file") from None
    if not isinstance(header, dict):
        raise WeightsError(f"cannot read {path}: not a safetensors file (the header is not a JSON object)")
    end, total = 0, 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            start, stop = (int(v) for v in info["data_offsets"])
        except (TypeError, KeyError, ValueError):
            raise WeightsError(f"cannot read {path}: tensor {str(name)[:60]} has no data_offsets") from None
        if not 0 <= start <= stop:
            raise WeightsError(f"cannot read {path}: tensor {str(name)[:60]} has data_offsets {start}, {stop}")
        end, total = max(end, stop), total + stop - start
    if 8 + n + end > size:
        raise WeightsError(f"{path}: its tensors need {human_bytes(end)} but the file holds "
                           f"{human_bytes(size - 8 - n)} after its header; a damaged file")
    _fits(path, total, "its tensors declare")
    return total


def check_keras_file(path) -> None:
    """A ``.keras`` zip: its members' declared (uncompressed) sizes against the memory (a zip
    bomb), then the datasets of its ``.h5`` weights (``check_h5_sizes``), before Keras reads it.
    Anything that is not a zip is left to Keras (one line naming the file)."""
    import io
    import zipfile

    path = Path(path)
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            _fits(path, sum(i.file_size for i in infos), "its zip members expand to")
            for info in infos:
                if info.filename.endswith(".h5"):
                    with z.open(info) as fh:
                        data = fh.read(info.file_size + 1)
                    if len(data) != info.file_size:
                        raise WeightsError(f"{path}: {info.filename} expands to more than its declared size")
                    check_h5_sizes(f"{path}:{info.filename}", io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError):
        return
