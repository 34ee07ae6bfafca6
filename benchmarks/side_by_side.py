"""Training throughput side by side, in one run, on the same data and batch size:

  A. kerascnn's training path with its defaults (kerascnn.training.run, the `kerascnn train` code)
  B. the plain Keras tutorial way: model.compile(...); model.fit(x_numpy, y_numpy, batch_size=...)
  C. the same architecture in PyTorch eager on the CPU (torch.set_num_threads(cores), its default), and
  D. the same with one thread: on a shared machine PyTorch's OpenMP barriers wait for descheduled
     threads and one thread can be several times faster; the last column compares with the faster.

kerascnn's defaults include mixed_bfloat16 on CPUs with native bf16 (AVX512-BF16/AMX) for models
wide enough to gain (convnet, resnet18; LeNet-5 stays float32), one inter-op thread on
single-process CPU runs, one tf.data stream for all epochs and adaptive steps per call; plain Keras
and PyTorch run with their defaults (float32). The inter-op setting is process-wide, so the plain
Keras variant in this process gets it too (which can only favour plain Keras).

Variants are interleaved (A, B, C, A, B, C, ...) and medians taken, because the machine may be
shared. The first epoch of every variant (tracing / warm-up) is excluded. Results are printed and
appended to benchmarks/RESULTS.md.

    /work/bench-venv/bin/python benchmarks/side_by_side.py --data ../shared/data/mnist.npz
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402

from _common import publish  # noqa: E402

HERE = Path(__file__).resolve().parent
CASES = {  # model -> (input shape, model options, images used, epochs timed)
    "lenet5": ((28, 28, 1), {}, 12800, 2),
    "convnet": ((28, 28, 1), {}, 12800, 2),
    "resnet18": ((32, 32, 3), {"small_input": True}, 1024, 1),
}


def load(data_path, shape, n):
    with np.load(data_path) as d:
        x, y = d["x_train"][:n], d["y_train"][:n].astype(np.int64)
    from kerascnn.data import prepare_images

    return prepare_images(x, shape[:2], shape[2], 1 / 255), y


def run_kerascnn(name, shape, opts, npz, epochs, batch):
    from kerascnn import training
    from kerascnn.training.merge import resolve_config

    with tempfile.TemporaryDirectory() as tmp:
        cli = {"model": name, "data": str(npz), "dataset": None, "epochs": epochs + 1, "batch_size": batch,
               "val_split": 0.0, "run_dir": str(Path(tmp) / "run"), "model_options": opts, "seed": 1}
        if shape[:2] != (28, 28):
            cli["image_size"] = list(shape[:2])
        training.run(resolve_config(cli), echo=lambda *a, **k: None, verbose=0)
        import csv

        with open(Path(tmp) / "run" / "history.csv") as fh:
            rows = list(csv.DictReader(fh))
    return [float(r["seconds"]) for r in rows[1:]]


def run_plain_keras(name, shape, opts, x, y, epochs, batch):
    import keras

    from kerascnn.registry import build_model

    keras.config.set_dtype_policy("float32")  # the tutorial's default (kerascnn restores it after training anyway)
    keras.utils.set_random_seed(1)
    model = build_model(name, shape, 10, **opts)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t)

    model.fit(x, y, batch_size=batch, epochs=epochs + 1, verbose=0, callbacks=[Timer()])
    return times[1:]


def run_torch(name, x, y, epochs, batch, threads=None):
    import torch

    sys.path.insert(0, str(HERE))
    from torch_models import MODELS

    torch.manual_seed(1)
    torch.set_num_threads(threads or os.cpu_count() or 1)
    model = MODELS[name]()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    yt = torch.from_numpy(y)
    times = []
    for _ in range(epochs + 1):
        t = time.perf_counter()
        perm = torch.randperm(len(xt))
        model.train()
        for i in range(0, len(xt) - batch + 1, batch):
            idx = perm[i:i + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t)
    return times[1:]


def _cell(r, k):
    """'median [min-max]' of one variant."""
    return f"{r[k + '_img_s']:,.0f} [{r[k + '_range'][0]:,}-{r[k + '_range'][1]:,}]"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data" / "mnist.npz"))
    ap.add_argument("--models", default="lenet5,convnet,resnet18")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--note", default="", help="e.g. the ISA emulation in effect, for the recorded table")
    args = ap.parse_args()
    import keras
    import tensorflow as tf
    import torch

    results = []
    for name in args.models.split(","):
        shape, opts, n, epochs = CASES[name]
        x, y = load(args.data, shape, n)
        with tempfile.TemporaryDirectory() as tmp:
            npz = Path(tmp) / "subset.npz"
            with np.load(args.data) as d:
                np.savez(npz, x_train=d["x_train"][:n], y_train=d["y_train"][:n], x_test=d["x_test"][:256],
                         y_test=d["y_test"][:256])
            samples = {"kerascnn": [], "keras_fit": [], "pytorch": [], "pytorch_1t": []}
            for _ in range(args.repeats):
                t = run_kerascnn(name, shape, opts, npz, epochs, args.batch_size)
                samples["kerascnn"] += [(n // args.batch_size) * args.batch_size / s for s in t]
                t = run_plain_keras(name, shape, opts, x, y, epochs, args.batch_size)
                samples["keras_fit"] += [n / s for s in t]
                t = run_torch(name, x, y, epochs, args.batch_size)
                samples["pytorch"] += [(n // args.batch_size) * args.batch_size / s for s in t]
                t = run_torch(name, x, y, epochs, args.batch_size, threads=1)   # no OpenMP barrier on a busy machine
                samples["pytorch_1t"] += [(n // args.batch_size) * args.batch_size / s for s in t]
        med = {k: statistics.median(v) for k, v in samples.items()}
        row = {"model": name, "input": "x".join(map(str, shape)), "images": n, "batch": args.batch_size,
               **{f"{k}_img_s": round(v, 1) for k, v in med.items()},
               **{f"{k}_range": [round(min(v)), round(max(v))] for k, v in samples.items()},
               "vs_keras_fit": round(med["kerascnn"] / med["keras_fit"], 2),
               "vs_pytorch": round(med["kerascnn"] / med["pytorch"], 2),
               "vs_best_pytorch": round(med["kerascnn"] / max(med["pytorch"], med["pytorch_1t"]), 2)}
        results.append(row)
        print(json.dumps(row), flush=True)
    from kerascnn.bench import cpu_name

    cpu = cpu_name()
    lines = [f"\n### Side by side, {datetime.datetime.now():%Y-%m-%d %H:%M}",
             f"{cpu}; Python {platform.python_version()}, TensorFlow {tf.__version__}, "
             f"Keras {keras.__version__}, PyTorch {torch.__version__}; batch {args.batch_size}; "
             f"median [min-max] of {args.repeats} interleaved repeats x epochs; training images/s (first epoch "
             f"excluded)" + (f"; {args.note}" if args.note else "") + ".\n",
             ("| model | input | kerascnn | plain Keras fit | PyTorch eager | PyTorch eager, 1 thread | kerascnn / Keras "
              "| kerascnn / PyTorch | kerascnn / faster PyTorch |"),
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['model']} | {r['input']} | {_cell(r, 'kerascnn')} | {_cell(r, 'keras_fit')} | "
                     f"{_cell(r, 'pytorch')} | {_cell(r, 'pytorch_1t')} | {r['vs_keras_fit']:.2f}x | {r['vs_pytorch']:.2f}x | "
                     f"{r['vs_best_pytorch']:.2f}x |")
    publish(lines, record=not args.no_record)


if __name__ == "__main__":
    main()
