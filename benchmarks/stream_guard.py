"""What the read-time guards cost the streamed input pipeline (issue 21).

The streamed path reads every file through ``safe_read`` (regular file, size, header pixels,
checked on the opened descriptor) and lets images that fail to decode drop out of the stream
(``ignore_errors`` + the position log), which keeps tf.data from fusing the decode map with the
batch. This measures ``stream.stream_dataset`` alone (no model): CPU time per image (user + sys
of the process) and images/s over ``--epochs`` epochs, for this checkout and, with ``--against
PATH``, another checkout of kerascnn (e.g. main before the guards), in separate processes,
interleaved (this, other, this, other, ...), median [min-max] of ``--repeat`` rounds.

    python benchmarks/stream_guard.py --against /path/to/main/checkout             # 28x28 gray PNGs
    python benchmarks/stream_guard.py --against /path/to/main --kind jpeg --size 128   # 128x128 RGB JPEGs
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHILD = """
import dataclasses, json, resource, sys, time
from pathlib import Path
from kerascnn.data import stream
folder, size, channels, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
x, y, _, _, _ = stream.scan(Path(folder), 0)
x = dataclasses.replace(x, size=(size, size), channels=channels)
ds = stream.stream_dataset(x, y, 64, 0, 0, epochs)
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.time()
n = sum(len(b[1]) for b in ds)
r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.time()
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
print(json.dumps({"us_per_image": 1e6 * cpu / n, "images_per_s": n / (t1 - t0), "images": n}))
"""


def make_images(folder: Path, n: int, kind: str, size: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (folder / c).mkdir(parents=True, exist_ok=True)
        for i in range(n // 2):
            if kind == "png":
                Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8), "L").save(folder / c / f"{i}.png")
            else:
                a = (rng.random((size, size, 3)) * 60 + np.linspace(0, 190, size)[None, :, None]).astype(np.uint8)
                Image.fromarray(a).save(folder / c / f"{i}.jpg", quality=90)


def run(path: str, folder: Path, size: int, channels: int, epochs: int) -> dict:
    env = dict(os.environ, PYTHONPATH=path, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(size), str(channels), str(epochs)],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--against", default=None, help="another kerascnn checkout to compare with")
    ap.add_argument("--kind", choices=["png", "jpeg"], default="png")
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--images", type=int, default=15000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    channels = 1 if args.kind == "png" else 3
    variants = {"this checkout": str(ROOT)}
    if args.against:
        variants[f"{args.against}"] = str(Path(args.against).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        make_images(folder, args.images, args.kind, args.size)
        results = {name: [] for name in variants}
        for _ in range(args.repeat):
            for name, path in variants.items():
                results[name].append(run(path, folder, args.size, channels, args.epochs))
    load = os.getloadavg()
    lines = [f"\n## Streamed pipeline with the read-time guards (`benchmarks/stream_guard.py --kind {args.kind} "
             f"--size {args.size} --images {args.images}`)", "",
             f"{_cpu()}, {os.cpu_count()} CPUs (shared), load average {load[0]:.1f} / {load[1]:.1f}; "
             f"{args.images:,} {args.size}x{args.size} {args.kind.upper()}s, 80% streamed, batch 64, "
             f"{args.epochs} epochs, median [min-max] of {args.repeat} interleaved runs", "",
             "| kerascnn | CPU us per image | images/s |", "|---|---|---|"]
    for name, rs in results.items():
        us = sorted(r["us_per_image"] for r in rs)
        ips = sorted(r["images_per_s"] for r in rs)
        lines.append(f"| {name} | {statistics.median(us):.0f} [{us[0]:.0f}-{us[-1]:.0f}] | "
                     f"{statistics.median(ips):,.0f} [{ips[0]:,.0f}-{ips[-1]:,.0f}] |")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _common import publish

    publish(lines, record=not args.no_record)


def _cpu() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
