"""End to end: `kerascnn summary ResNet50.keras` against `torchinfo.summary` on torchvision's ResNet-50.

    python benchmarks/summary_vs_torchinfo.py [--torch-python /work/torchenv/bin/python] [--repeats 5]
                                              [--before /work/main] [--no-record]

Each variant is a fresh process, timed from start to exit, output discarded; the variants are
interleaved (A, B, C, [D], A, B, ...) and the median [min-max] reported with the CPU and load:

* A ``kerascnn summary ResNet50.keras``: the arithmetic read from the file's config.json (no TensorFlow,
  no weights);
* B ``torchinfo.summary(torchvision.models.resnet50(), (1, 3, 224, 224))`` with ``import torch,
  torchvision, torchinfo`` (what a PyTorch user runs for the same table: params and mult-adds);
* C ``kerascnn summary ResNet50.keras --keras``: also Keras's model.summary() and per-layer counts
  (TensorFlow imported, the model built from the config);
* D (``--before DIR``): the same command with the kerascnn checkout in DIR on ``PYTHONPATH`` (before this
  change: TensorFlow imported and the weights loaded).

The file is ``keras.applications.ResNet50(weights=None)`` saved once with ``model.save`` (98 MB).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import publish  # noqa: E402

TORCHINFO = ("import torch, torchvision, torchinfo; "
             "torchinfo.summary(torchvision.models.resnet50(), input_size=(1, 3, 224, 224))")


def timed(cmd, env, cwd) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=cwd, timeout=600)
    wall = time.perf_counter() - t
    if r.returncode:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed: {r.stderr.decode()[-800:]}")
    return wall


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--torch-python", default="/work/torchenv/bin/python")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--before", default=None, help="a kerascnn checkout to time as 'before' (its PYTHONPATH)")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args(argv)

    from kerascnn.cpu import cpu_description

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ResNet50.keras"
        subprocess.run([sys.executable, "-c", "import keras; keras.applications.ResNet50(weights=None).save("
                        f"{str(path)!r})"], check=True, env=env, capture_output=True)
        variants = {
            "A kerascnn summary ResNet50.keras": ([sys.executable, "-m", "kerascnn", "summary", path], env),
            "B torchinfo.summary(resnet50)": ([args.torch_python, "-c", TORCHINFO], env),
            "C kerascnn summary ResNet50.keras --keras": ([sys.executable, "-m", "kerascnn", "summary", path,
                                                          "--keras"], env),
        }
        if args.before:
            variants["D before: kerascnn summary ResNet50.keras"] = (
                [sys.executable, "-m", "kerascnn", "summary", path],
                dict(env, PYTHONPATH=str(Path(args.before).resolve())))
        for cmd, e in variants.values():  # warm the page cache (Python, TensorFlow, torch, the file)
            timed(cmd, e, tmp)  # cwd: a directory without a kerascnn/ of its own (``-m`` looks there first)
        times = {k: [] for k in variants}
        load = []
        for _ in range(args.repeats):
            for k, (cmd, e) in variants.items():
                load.append(os.getloadavg()[0])
                times[k].append(timed(cmd, e, tmp))
    a = statistics.median(times["A kerascnn summary ResNet50.keras"])
    b = statistics.median(times["B torchinfo.summary(resnet50)"])
    lines = [f"\n## `kerascnn summary ResNet50.keras` vs `torchinfo.summary` on torchvision's ResNet-50 "
             f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
             f"`python benchmarks/summary_vs_torchinfo.py --repeats {args.repeats}`; fresh process each, interleaved, "
             f"seconds end to end, median [min-max]; CPU: {cpu_description()}, shared; load average "
             f"{min(load):.1f}-{max(load):.1f}", "", "| variant | seconds |", "|---|---|"]
    for k, v in times.items():
        lines.append(f"| {k} | {statistics.median(v):.2f} [{min(v):.2f}-{max(v):.2f}] |")
    lines += ["", f"kerascnn (A) takes {a / b:.2f}x the time of torchinfo (B)."]
    publish(lines, not args.no_record)


if __name__ == "__main__":
    main()
