"""What one save of the training state costs (``--save-every``, issue 25): the size of
``backup/state.npz`` and the seconds to take the state from the engine (``get_state``) and write
it atomically (``checkpoint.save_state``: .npz, fsync, rename), for convnet and resnet18
(``small_input``) at 32x32x3 with their family optimizers (convnet Adam, resnet18 SGD + momentum).

Each model is built once per engine; the saves are interleaved between the models, repeated, and
reported as median [min-max], with what a save every 10 minutes (the default) adds to a run.

    python benchmarks/save_cost.py [--repeats 5] [--backend tensorflow|jax] [--dir .] [--no-record]
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

MODELS = (("convnet", {}, "adam"), ("resnet18", {"small_input": True}, "sgd"))


def engine_for(name: str, options: dict, optimizer: str, backend: str):
    import keras
    import numpy as np

    from kerascnn.engines.base import StepData
    from kerascnn.registry import get_entry
    from kerascnn.schedules import make_optimizer, make_schedule

    keras.utils.set_random_seed(0)
    if backend == "jax":
        from kerascnn.engines.jax import JaxEngine

        engine = JaxEngine(10)
    else:
        from kerascnn.distribute import choose
        from kerascnn.engines.tensorflow import TensorFlowEngine

        engine = TensorFlowEngine(choose("default"), 10)
    entry = get_entry(name)
    engine.build(lambda: entry.build((32, 32, 3), 10, **options),
                 lambda: make_optimizer(optimizer, make_schedule("cosine", 0.01, 100, 0), 0.0, 0.9))
    x = np.random.default_rng(0).random((64, 32, 32, 3), np.float32)
    engine.set_train_data(StepData(x, np.arange(64) % 10, 32, 0, 0, 1))
    engine.reseed(0, 0)
    engine.train_steps(1)       # the state after a real step (optimizer slots written)
    return engine, sum(int(np.prod(w.shape)) for w in engine.model.weights)


def one_save(engine, path: Path) -> tuple:
    from kerascnn.training import checkpoint

    t0 = time.perf_counter()
    state = engine.get_state()
    t1 = time.perf_counter()
    checkpoint.save_state(path, state, {"epoch": 0, "best": 0.0, "history": [], "optimizer": "x", "step": 1,
                                        "steps": 2, "totals": [0.0, 0.0, 0.0]})
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, path.stat().st_size


def cpu_name() -> str:
    """The CPU's model name and the vector extensions that matter here (from /proc/cpuinfo)."""
    name, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    known = (("avx512f", "AVX-512"), ("avx512_bf16", "AVX512_BF16"), ("avx512_fp16", "AVX512_FP16"),
             ("amx_tile", "AMX"), ("avx2", "AVX2"))
    shown = [word for flag, word in known if flag in flags]
    if "AVX-512" in shown and "AVX2" in shown:
        shown.remove("AVX2")
    return name + (", " + " + ".join(shown) if shown else "")


def fmt(values, scale=1.0, digits=3) -> str:
    v = [x * scale for x in values]
    return f"{statistics.median(v):.{digits}f} [{min(v):.{digits}f}-{max(v):.{digits}f}]"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--backend", choices=("tensorflow", "jax"), default="tensorflow")
    ap.add_argument("--dir", default=".", help="where the states are written (the disk a run directory is on)")
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()
    os.environ.setdefault("KERAS_BACKEND", a.backend)
    if os.environ["KERAS_BACKEND"] != a.backend:
        sys.exit(f"KERAS_BACKEND={os.environ['KERAS_BACKEND']} but --backend {a.backend}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from _common import publish

    engines = {name: engine_for(name, opts, opt, a.backend) for name, opts, opt in MODELS}
    where = Path(tempfile.mkdtemp(prefix="save-cost-", dir=a.dir))
    seen = {name: ([], [], []) for name in engines}
    try:
        for name, (engine, _) in engines.items():        # warm-up: first reads, first file
            one_save(engine, where / f"{name}.npz")
        for _ in range(a.repeats):
            for name, (engine, _) in engines.items():     # interleaved
                g, s, size = one_save(engine, where / f"{name}.npz")
                seen[name][0].append(g)
                seen[name][1].append(s)
                seen[name][2].append(size)
    finally:
        shutil.rmtree(where, ignore_errors=True)
    load = os.getloadavg()
    lines = [f"\n## One save of the training state (`benchmarks/save_cost.py --repeats {a.repeats} --backend "
             f"{a.backend}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
             f"{cpu_name()}, {os.cpu_count()} cores, shared; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
             f"ext4 under the run directory; median [min-max] of {a.repeats}, interleaved.", "",
             "| model (32x32x3, 10 classes) | optimizer | weights (values) | state.npz | get_state s | write s (npz, fsync, "
             "rename) | a save every 10 min adds |", "|---|---|---|---|---|---|---|"]
    for name, opts, opt in MODELS:
        g, s, size = seen[name]
        total = statistics.median(x + y for x, y in zip(g, s))
        lines.append(f"| {name}{' small_input' if opts else ''} | {opt} | {engines[name][1]:,} | "
                     f"{size[0] / 2 ** 20:.1f} MiB | {fmt(g)} | {fmt(s)} | {100 * total / 600:.3f} % |")
    publish(lines, record=not a.no_record)


if __name__ == "__main__":
    main()
