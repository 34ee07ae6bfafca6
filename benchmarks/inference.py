"""Inference: an exported SavedModel against `model.predict` on the same model, in one process.

For each model: build it (seeded weights), export it exactly as `kerascnn export` does (verified
SavedModel, uint8 `serving_default` signature with scaling inside) and, with `--fuse-bn`, a second
export with BatchNorm folded into the convolutions. Then time, on the same uint8 images:

  * single-image latency (median and p90 over many calls, after warm-up):
      Keras `model.predict(x1)` (what the Keras guides show), Keras `model(x1)` (a direct call),
      SavedModel `serving_default(images=x1)` (what TF Serving / a plain TensorFlow process runs);
  * batch-256 throughput (images/s, median of windows): `model.predict(x, batch_size=256)` and
    `serving_default(images=x)`.

Results are printed and appended to benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/inference.py [--models convnet,lenet5,resnet18] [--no-record]
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

CASES = {  # model -> (input shape, model options)
    "lenet5": ((28, 28, 1), {}),
    "convnet": ((28, 28, 1), {}),
    "resnet18": ((32, 32, 3), {"small_input": True}),
    "vgg11_bn": ((64, 64, 3), {}),
}


def latency_ms(fn, calls: int, warmup: int = 10) -> tuple:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t))
    times.sort()
    return statistics.median(times), times[int(0.9 * (len(times) - 1))]


def throughput(fn, n_images: int, windows: int = 5) -> float:
    fn()
    rates = []
    for _ in range(windows):
        t = time.perf_counter()
        fn()
        rates.append(n_images / (time.perf_counter() - t))
    return statistics.median(rates)


def measure(name, shape, opts, tmp, calls, fuse):
    import keras
    import tensorflow as tf

    from kerascnn.exporter import export_savedmodel
    from kerascnn.training.record import RunRecord

    keras.utils.set_random_seed(0)
    from kerascnn.registry import build_model

    model = build_model(name, shape, 10, **opts)
    info = RunRecord.for_model(name, shape, 10, opts)
    rng = np.random.default_rng(0)
    x256 = rng.integers(0, 256, (256,) + shape, dtype=np.uint8)
    x1 = x256[:1]
    f256, f1 = x256.astype(np.float32) / 255, x1.astype(np.float32) / 255
    row = {"model": name, "input": "x".join(map(str, shape))}
    row["predict_ms"], row["predict_p90_ms"] = latency_ms(lambda: model.predict(f1, verbose=0), calls)
    row["call_ms"], row["call_p90_ms"] = latency_ms(lambda: model(f1, training=False).numpy(), calls)
    row["predict_256_img_s"] = throughput(lambda: model.predict(f256, batch_size=256, verbose=0), 256)
    variants = [("savedmodel", model)]
    if fuse:
        from kerascnn.fuse import count_batchnorm, fold_batchnorm

        if count_batchnorm(model):
            variants.append(("savedmodel_fused", fold_batchnorm(model, name, opts)))
    for key, m in variants:
        target = Path(tmp) / f"{name}-{key}"
        export_savedmodel(m, info, target)
        serve = tf.saved_model.load(str(target)).signatures["serving_default"]
        t1, t256 = tf.constant(x1), tf.constant(x256)
        row[f"{key}_ms"], row[f"{key}_p90_ms"] = latency_ms(lambda: serve(images=t1)["probabilities"].numpy(), calls)
        row[f"{key}_256_img_s"] = throughput(lambda: serve(images=t256)["probabilities"].numpy(), 256)
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="lenet5,convnet,resnet18")
    ap.add_argument("--calls", type=int, default=200, help="single-image calls timed per variant")
    ap.add_argument("--no-fuse", action="store_true", help="skip the BatchNorm-folded export")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    import keras
    import tensorflow as tf

    from kerascnn.bench import cpu_name

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            shape, opts = CASES[name]
            row = measure(name, shape, opts, tmp, args.calls, not args.no_fuse)
            rows.append(row)
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)

    def fused(r, key, fmt):
        return fmt.format(r[key]) if key in r else "—"

    lines = [f"\n### Inference: SavedModel vs model.predict, {datetime.datetime.now():%Y-%m-%d %H:%M}",
             f"{cpu_name()}; Python {platform.python_version()}, TensorFlow {tf.__version__}, "
             f"Keras {keras.__version__}; float32; single-image latency = median over {args.calls} calls "
             f"(p90 in brackets); batch-256 throughput = median of 5 windows.\n",
             "| model | input | `model.predict(x1)` | `model(x1)` | SavedModel (x1) | SavedModel, BN folded (x1) "
             "| `predict` batch 256 | SavedModel batch 256 | SavedModel, BN folded, batch 256 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['input']} | {r['predict_ms']:.2f} ms ({r['predict_p90_ms']:.2f}) | "
            f"{r['call_ms']:.2f} ms ({r['call_p90_ms']:.2f}) | {r['savedmodel_ms']:.2f} ms "
            f"({r['savedmodel_p90_ms']:.2f}) | {fused(r, 'savedmodel_fused_ms', '{:.2f} ms')} | "
            f"{r['predict_256_img_s']:,.0f} img/s | {r['savedmodel_256_img_s']:,.0f} img/s | "
            f"{fused(r, 'savedmodel_fused_256_img_s', '{:,.0f} img/s')} |")
    publish(lines, record=not args.no_record)


if __name__ == "__main__":
    sys.exit(main())
