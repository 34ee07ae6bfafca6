"""Input pipeline alone: kerascnn's streaming path vs keras.utils.image_dataset_from_directory.

Generates a folder of small JPEGs (class sub-folders), then in ONE process, interleaved
(A, B, A, B, ...), medians reported:
  - start-up: kerascnn ``stream.scan`` (listing + header pass) vs ``image_dataset_from_directory``
    construction (listing);
  - decode + resize + batch images/s over one pass (first batch excluded) for both;
  - a resnet18 (small input) training step's images/s at the same size and batch, so one can see
    whether the pipeline keeps the step fed.

    python benchmarks/data_pipeline.py --images 2000 --size 64 --to 32 [--no-record]
    python benchmarks/data_pipeline.py --startup /work/bigdata/jpeg64 --to 64   # start-up only, on a given folder
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402


def make_folder(root: Path, n: int, size: int, classes: int = 10) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (classes, size, size, 3), dtype=np.uint8)
    for k in range(classes):
        (root / f"class{k:02d}").mkdir(parents=True)
    for i in range(n):
        k = i % classes
        noise = rng.integers(-30, 30, (size, size, 3))
        img = np.clip(base[k].astype(int) + noise, 0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / f"class{k:02d}" / f"{i:06d}.jpg", quality=90)


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def time_pass(ds) -> tuple:
    """(seconds for the first batch, images/s over the rest)."""
    t0 = time.perf_counter()
    it = iter(ds)
    first = next(it)
    t1 = time.perf_counter()
    n = 0
    for xb, _ in it:
        n += int(xb.shape[0])
    t2 = time.perf_counter()
    del first
    return t1 - t0, n / (t2 - t1)


def kerascnn_run(root: Path, to: int, batch: int):
    import dataclasses

    from kerascnn.data import stream

    t0 = time.perf_counter()
    x, y, _, _, _ = stream.scan(root, 0)
    setup = time.perf_counter() - t0
    x = dataclasses.replace(x, size=(to, to), channels=3)
    ds = stream.stream_dataset(x, y, batch, 0, 0, 1)
    first, ips = time_pass(ds)
    return setup, first, ips, len(x)


def keras_run(root: Path, to: int, batch: int):
    import keras

    t0 = time.perf_counter()
    ds = keras.utils.image_dataset_from_directory(root, image_size=(to, to), batch_size=batch, seed=0,
                                                  verbose=False)
    setup = time.perf_counter() - t0
    first, ips = time_pass(ds)
    return setup, first, ips


def plain_tf_run(root: Path, to: int, batch: int, antialias: bool):
    """The bare TF graph (read, decode, resize, batch) with or without antialiasing: where the time goes."""
    import tensorflow as tf

    files = sorted(str(f) for f in root.rglob("*.jpg"))
    paths = tf.constant(files)

    def load(k):
        img = tf.io.decode_image(tf.io.read_file(paths[k]), channels=3, expand_animations=False)
        img.set_shape((None, None, 3))
        return tf.image.resize(tf.cast(img, tf.float32), (to, to), antialias=antialias) / 255.0, k

    ds = tf.data.Dataset.range(len(files)).map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return time_pass(ds.batch(batch).prefetch(tf.data.AUTOTUNE))


def step_rate(to: int, batch: int, steps: int = 6) -> float:
    import keras
    import tensorflow as tf

    from kerascnn.registry import get_entry

    model = get_entry("resnet18").build((to, to, 3), 10, small_input=True)
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy")
    x = tf.random.uniform((batch, to, to, 3))
    y = tf.zeros((batch,), tf.int64)
    model.train_on_batch(x, y)
    t0 = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return steps * batch / (time.perf_counter() - t0)


def child(kind: str, root: Path, to: int, batch: int) -> None:
    """One measurement in a fresh process: peak RSS and images/s for a whole pass over ``root``."""
    import tensorflow as tf  # noqa: F401  (imported before the baseline RSS is read)

    def hwm_kib() -> int:  # peak RSS of this address space (VmHWM; ru_maxrss would include the parent's)
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return 0

    base = hwm_kib()
    t0 = time.perf_counter()
    if kind == "stream":
        import dataclasses

        from kerascnn.data import stream

        x, y, _, _, _ = stream.scan(root, 0)
        x = dataclasses.replace(x, size=(to, to), channels=3)
        n = 0
        for xb, _ in stream.stream_dataset(x, y, batch, 0, 0, 1):
            n += int(xb.shape[0])
    else:
        from kerascnn import data as D

        d = D.load_data(data=str(root), seed=0)
        xs = D.prepare_images(d.x_train, (to, to), 3, d.pixel_scale)
        n = 0
        for xb, _ in D.train_dataset(xs, d.y_train, batch, 0, 0, 1):
            n += int(xb.shape[0])
    dt = time.perf_counter() - t0
    peak = hwm_kib()
    print(f"RESULT {kind} {n} {dt:.2f} {base / 1024:.0f} {peak / 1024:.0f}")


def memory(a) -> list:
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "jpegs"
        make_folder(root, a.memory, a.size)
        rows = []
        for kind in ("stream", "memory"):
            r = subprocess.run([sys.executable, __file__, "--child", kind, str(root), "--to", str(a.to),
                                "--batch", str(a.batch)], capture_output=True, text=True)
            line = next((ln for ln in r.stdout.splitlines() if ln.startswith("RESULT")), None)
            rows.append(line.split()[1:] if line else [kind, "failed", r.stderr.strip().splitlines()[-1][:80]])
    decoded = a.memory * a.to * a.to * 3 * 4
    out = ["", f"### Memory: one pass over {a.memory:,} {a.size}x{a.size} JPEGs at {a.to}x{a.to}x3 "
               f"(float32 decoded size {decoded / 2**20:,.0f} MiB), each in a fresh process", "",
           "| path | images | seconds (listing to last batch) | RSS after importing TF | peak RSS |", "|---|---|---|---|---|"]
    for row in rows:
        if len(row) == 5:
            kind, n, s, base, peak = row
            out.append(f"| {kind} | {int(n):,} | {float(s):.1f} | {base} MiB | {peak} MiB |")
        else:
            out.append(f"| {row[0]} | failed: {' '.join(row[1:])} | | | |")
    return out


def startup(a) -> None:
    """First-epoch start-up on an existing (large) folder: kerascnn's listing + header pass (what
    ``train`` does before the first batch: ``count_files`` for ``--stream auto``, then
    ``stream.scan``) vs ``image_dataset_from_directory`` (listing), interleaved, in one process."""
    import keras
    import tensorflow as tf

    from benchmarks._common import publish
    from kerascnn.data import stream

    root = Path(a.startup)
    ours, theirs = [], []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        n = stream.count_files(root)
        t1 = time.perf_counter()
        x, _, x_te, _, _ = stream.scan(root, 0)
        ours.append((t1 - t0, time.perf_counter() - t1))
        t0 = time.perf_counter()
        keras.utils.image_dataset_from_directory(root, image_size=(a.to, a.to), batch_size=a.batch, seed=0,
                                                 verbose=False)
        theirs.append(time.perf_counter() - t0)
    med = statistics.median
    publish(["", f"### First-epoch start-up on {root} ({n:,} files; `benchmarks/data_pipeline.py --startup "
                 f"{root}`)", "",
             f"{cpu_name()}, {os.cpu_count()} CPUs (shared), TensorFlow {tf.__version__}; median of {a.repeats} "
             f"interleaved runs in one process (the page cache is warm after the first).", "",
             "| pipeline | start-up |", "|---|---|",
             f"| kerascnn: count (`--stream auto`) + listing + header pass (`stream.scan`, "
             f"{len(x) + len(x_te):,} files) | {med(a_ + b for a_, b in ours):.1f} s "
             f"(count {med(a_ for a_, _ in ours):.1f} s, scan {med(b for _, b in ours):.1f} s) |",
             f"| `keras.utils.image_dataset_from_directory` (listing) | {med(theirs):.1f} s |"],
            record=not a.no_record)


def main(argv=None):
    if argv is None and len(sys.argv) > 2 and sys.argv[1] == "--child":
        kind, root = sys.argv[2], Path(sys.argv[3])
        q = argparse.ArgumentParser()
        q.add_argument("--to", type=int)
        q.add_argument("--batch", type=int)
        b = q.parse_args(sys.argv[4:])
        return child(kind, root, b.to, b.batch)
    p = argparse.ArgumentParser()
    p.add_argument("--memory", type=int, default=0, help="Also: peak RSS of streaming vs in-memory over this "
                   "many generated JPEGs (fresh processes).")
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--to", type=int, default=32)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-record", action="store_true")
    p.add_argument("--startup", metavar="DIR", help="Only the start-up comparison, on this existing folder.")
    a = p.parse_args(argv)
    if a.startup:
        return startup(a)
    mem_lines = memory(a) if a.memory else []  # first: child processes, before this one loads TF
    import tensorflow as tf

    from benchmarks._common import publish

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "jpegs"
        t0 = time.perf_counter()
        make_folder(root, a.images, a.size)
        gen = time.perf_counter() - t0
        ours, theirs, aa, no_aa = [], [], [], []
        for _ in range(a.repeats):
            ours.append(kerascnn_run(root, a.to, a.batch))
            theirs.append(keras_run(root, a.to, a.batch))
            aa.append(plain_tf_run(root, a.to, a.batch, True))
            no_aa.append(plain_tf_run(root, a.to, a.batch, False))
        step = step_rate(a.to, a.batch)
    med = lambda rows, i: statistics.median(r[i] for r in rows)  # noqa: E731
    lines = [
        "",
        f"## Input pipeline (`benchmarks/data_pipeline.py --images {a.images} --size {a.size} --to {a.to} "
        f"--batch {a.batch}`)",
        "",
        f"{cpu_name()}, {os.cpu_count()} CPUs, TensorFlow {tf.__version__}; {a.images:,} {a.size}x{a.size} RGB "
        f"JPEGs in 10 class folders (generated in {gen:.1f} s), decoded, resized to {a.to}x{a.to}, batched "
        f"by {a.batch}; median of {a.repeats} interleaved runs in one process.",
        "",
        "| pipeline | start-up (listing + header pass) | first batch | images/s (rest of the pass) |",
        "|---|---|---|---|",
        f"| kerascnn stream (`stream.scan` + `stream_dataset`) | {med(ours, 0):.2f} s | {med(ours, 1):.2f} s | "
        f"{med(ours, 2):,.0f} |",
        f"| `keras.utils.image_dataset_from_directory` | {med(theirs, 0):.2f} s | {med(theirs, 1):.2f} s | "
        f"{med(theirs, 2):,.0f} |",
        f"| bare tf.data read + decode + resize, antialias on (as kerascnn) | - | {med(aa, 0):.2f} s | "
        f"{med(aa, 1):,.0f} |",
        f"| bare tf.data read + decode + resize, antialias off (as keras) | - | {med(no_aa, 0):.2f} s | "
        f"{med(no_aa, 1):,.0f} |",
        "",
        f"resnet18 (small input) training step at {a.to}x{a.to}, batch {a.batch}, float32 on this CPU: "
        f"{step:,.0f} images/s -> the streaming pipeline delivers {med(ours, 2) / step:.1f}x what the step "
        f"consumes ({'fed' if med(ours, 2) >= step else 'NOT fed'}).",
    ] + mem_lines
    publish(lines, record=not a.no_record)


if __name__ == "__main__":
    main()
