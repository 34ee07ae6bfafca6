"""What an in-memory training run really holds: peak RSS vs ``guard.in_memory_bytes`` (issue 25).

Makes a CIFAR-sized ``.npz`` (50,000 + 10,000 random 32x32 RGB images, uint8) and a 2,000-image one,
then runs ``kerascnn train MODEL --data NPZ --image-size S --epochs 1 --batch-size 512`` in fresh
processes under ``/usr/bin/time -v`` (peak RSS), for gray (lenet5) and RGB (mlp) models at several
sizes, and prints the estimate beside each peak: the runtime (``guard.RUNTIME_PEAK``) +
``RAW_COPIES`` x the raw images + ``FLOAT_COPIES`` x the prepared float32 training images. Last, the
refusal under a limit (``KERASCNN_MEMORY_LIMIT``, which ``guard.available_bytes`` reads): one line,
before anything is loaded, no run directory.

    python benchmarks/memory_honesty.py [--work /tmp/memcal] [--no-record]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402

RUNS = (("lenet5", "small", 32, 1), ("mlp", "small", 32, 3), ("lenet5", "big", 16, 1), ("lenet5", "big", 32, 1),
        ("lenet5", "big", 48, 1), ("mlp", "big", 16, 3), ("mlp", "big", 24, 3), ("mlp", "big", 32, 3))


def make(work: Path) -> dict:
    out = {}
    for name, n, n_te in (("big", 50000, 10000), ("small", 2000, 500)):
        f = work / f"{name}.npz"
        if not f.is_file():
            rng = np.random.default_rng(0)
            np.savez(f, x_train=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), y_train=rng.integers(0, 10, n),
                     x_test=rng.integers(0, 256, (n_te, 32, 32, 3), dtype=np.uint8), y_test=rng.integers(0, 10, n_te))
        out[name] = (f, n, (n + n_te) * 32 * 32 * 3)
    return out


def peak_rss(args: list, env: dict) -> tuple:
    r = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "kerascnn", *args], capture_output=True,
                       text=True, env=env)
    kb = next((int(ln.split()[-1]) for ln in r.stderr.splitlines() if "Maximum resident" in ln), 0)
    return r.returncode, kb * 1024, r.stderr


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--work", default="/tmp/kerascnn-memcal")
    p.add_argument("--no-record", action="store_true")
    a = p.parse_args()
    from benchmarks._common import publish
    from benchmarks.data_speed import cpu_name, load_average
    from kerascnn import guard

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    data = make(work)
    env = dict(os.environ, PYTHONPATH=str(HERE.parent), TF_CPP_MIN_LOG_LEVEL="3")
    mib = 2 ** 20
    rows = ["", "## Memory honesty: in-memory runs, peak RSS vs the estimate (`benchmarks/memory_honesty.py`)", "",
            f"{cpu_name()}, {os.cpu_count()} CPUs, load average {load_average()}; `kerascnn train MODEL --data NPZ "
            f"--image-size S --epochs 1 --batch-size 512 --precision float32`, each a fresh process under "
            f"`/usr/bin/time -v`. raw = the .npz's uint8 images; float32 = the training images prepared at S. "
            f"Estimate = {guard.RUNTIME_PEAK // mib} MiB runtime + {guard.RAW_COPIES} x raw + "
            f"{guard.FLOAT_COPIES} x float32.", "",
            "| model, data, size | raw MiB | float32 MiB | peak RSS MiB | estimate MiB | estimate / peak |",
            "|---|---|---|---|---|---|"]
    for model, which, size, ch in RUNS:
        f, n, raw = data[which]
        run_dir = work / f"run-{model}-{which}-{size}"
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)
        rc, peak, err = peak_rss(["train", model, "--data", str(f), "--image-size", str(size), "--epochs", "1",
                                  "--batch-size", "512", "--precision", "float32", "-q", "--run-dir", str(run_dir)], env)
        prepared = n * size * size * ch * 4
        est = guard.RUNTIME_PEAK + guard.RAW_COPIES * raw + guard.FLOAT_COPIES * prepared
        rows.append(f"| {model} ({'gray' if ch == 1 else 'RGB'}), {n:,} images, {size} | {raw / mib:,.0f} | "
                    f"{prepared / mib:,.0f} | {peak / mib:,.0f}{'' if rc == 0 else ' (rc ' + str(rc) + ')'} | "
                    f"{est / mib:,.0f} | {est / max(peak, 1):.2f} |")
        print(rows[-1], flush=True)
    f = data["big"][0]
    t0 = time.perf_counter()
    rc, peak, err = peak_rss(["train", "mlp", "--data", str(f), "--image-size", "32", "--epochs", "1", "-q",
                              "--run-dir", str(work / "capped")], dict(env, KERASCNN_MEMORY_LIMIT="2G"))
    line = next((ln for ln in err.splitlines() if ln.startswith("Error:")), "(no error line)")
    rows += ["", f"Under `KERASCNN_MEMORY_LIMIT=2G` (what `guard.available_bytes` reports; a memory cgroup gives the "
                 f"same figure): `kerascnn train mlp --data big.npz --image-size 32` exits {rc} after "
                 f"{time.perf_counter() - t0:.1f} s at {peak / mib:,.0f} MiB peak RSS, run directory created: "
                 f"{(work / 'capped').exists()}:", "", f"    {line}"]
    publish(rows, record=not a.no_record)


if __name__ == "__main__":
    main()
