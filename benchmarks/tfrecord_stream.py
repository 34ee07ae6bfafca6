"""TFRecord shards: kerascnn's stream (``records.scan`` + ``stream_dataset``) vs the in-memory load.

Generates a folder of small JPEGs, writes it as shards with ``kerascnn shards``' writer, then in
ONE process, interleaved (memory, stream, memory, stream, ...), medians reported:
  - in memory: ``load_data`` (parse + decode every record) + ``prepare_images``, images/s of the whole;
  - stream: ``stream.scan`` (label pass) seconds, then one training epoch of batches, images/s.

    python benchmarks/tfrecord_stream.py --images 4000 --size 32 --to 32 --shards 8
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=4000)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--to", type=int, default=32)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    from data_pipeline import cpu_name, make_folder

    from kerascnn import data as D
    from kerascnn.data import formats, stream

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        make_folder(Path(tmp) / "jpg", a.images, a.size)
        formats.write_shards(Path(tmp) / "jpg", Path(tmp) / "s", a.shards)
        print(f"{cpu_name()}, {os.cpu_count()} CPUs; {a.images:,} {a.size}x{a.size} RGB JPEGs in {a.shards} shards "
              f"(made in {time.perf_counter() - t0:.1f} s), to {a.to}x{a.to}, batch {a.batch}")
        mem, scan, strm = [], [], []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            d = D.load_data(data=str(Path(tmp) / "s"))
            D.prepare_images(d.x_train, (a.to, a.to), 3, d.pixel_scale)
            mem.append(len(d.x_train) / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            x_tr, y_tr, *_ = stream.scan(Path(tmp) / "s", 0)
            scan.append(time.perf_counter() - t0)
            fi = dataclasses.replace(x_tr, size=(a.to, a.to), channels=3)
            t0 = time.perf_counter()
            n = sum(len(yb) for _, yb in stream.stream_dataset(fi, y_tr, a.batch, 0, 0, 1))
            strm.append(n / (time.perf_counter() - t0))
        med = statistics.median
        print(f"in memory (load_data + prepare_images): {med(mem):,.0f} images/s")
        print(f"stream: label pass {med(scan):.2f} s, then {med(strm):,.0f} images/s (one epoch, decoded + batched)")


if __name__ == "__main__":
    main()
