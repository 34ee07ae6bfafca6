"""Time to 99 % test accuracy on MNIST, side by side on the same machine:

  A. kerascnn's fast recipe, run exactly as a user would (the `kerascnn` CLI in a subprocess):
         kerascnn train convnet --data mnist.npz --epochs 4 --batch-size 256 \
             --schedule onecycle --lr 5e-3 --val-split 0
     then `kerascnn evaluate RUN --data mnist.npz` for the test accuracy.
  B. the Keras "Simple MNIST convnet" example (keras.io/examples/vision/mnist_convnet):
     Conv(32,3)-MaxPool-Conv(64,3)-MaxPool-Flatten-Dropout(0.5)-Dense(10, softmax),
     categorical cross-entropy, Adam, batch 128, 15 epochs, validation_split 0.1, model.fit on
     numpy arrays. After every epoch the test accuracy is measured (outside the timed window) to
     find the first epoch that reaches the target.

Prints both and appends a table to benchmarks/RESULTS.md.

    python benchmarks/time_to_accuracy.py --data ../shared/data/mnist.npz
"""
import argparse
import csv
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import publish

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
RECIPE = ["train", "convnet", "--epochs", "4", "--batch-size", "256", "--schedule", "onecycle", "--lr", "5e-3",
          "--val-split", "0", "--seed", "1"]


def kerascnn_cli(*args, cwd):
    exe = [sys.executable, "-m", "kerascnn"]
    t = time.perf_counter()
    r = subprocess.run(exe + list(args), cwd=cwd, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"kerascnn {' '.join(args)} failed:\n{r.stderr[-2000:]}")
    return time.perf_counter() - t, r.stdout


def run_kerascnn(data):
    with tempfile.TemporaryDirectory() as tmp:
        wall, _ = kerascnn_cli(*RECIPE, "--data", data, "--run-dir", "run", cwd=tmp)
        with open(Path(tmp) / "run" / "history.csv") as fh:
            rows = list(csv.DictReader(fh))
        _, out = kerascnn_cli("evaluate", "run", "--data", data, "--format", "json", cwd=tmp)
        metrics = json.loads(out[out.index("{"):])
        config = json.loads((Path(tmp) / "run" / "config.json").read_text())
    return {"train_seconds": sum(float(r["seconds"]) for r in rows), "wall_seconds": wall,
            "epochs": len(rows), "test_accuracy": float(metrics["accuracy"]),
            "precision": config["precision_resolved"]}


def run_keras_example(data, target, epochs=15):
    import keras
    import numpy as np

    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(1)
    with np.load(data) as d:
        x_train, y_train, x_test, y_test = d["x_train"], d["y_train"], d["x_test"], d["y_test"]
    t0 = time.perf_counter()
    x_train = np.expand_dims(x_train.astype("float32") / 255, -1)
    x_test = np.expand_dims(x_test.astype("float32") / 255, -1)
    y_train = keras.utils.to_categorical(y_train, 10)
    y_test_c = keras.utils.to_categorical(y_test, 10)
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    setup = time.perf_counter() - t0
    per_epoch = []

    class TestEvery(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds = time.perf_counter() - self.t  # training + the example's validation split
            acc = model.evaluate(x_test, y_test_c, batch_size=512, verbose=0)[1]
            per_epoch.append((seconds, acc))
            print(f"  keras example epoch {epoch + 1}: {seconds:.1f} s, test accuracy {acc:.4f}", flush=True)

    model.fit(x_train, y_train, batch_size=128, epochs=epochs, validation_split=0.1, verbose=0,
              callbacks=[TestEvery()])
    cumulative, first = setup, None
    for i, (seconds, acc) in enumerate(per_epoch):
        cumulative += seconds
        if first is None and acc >= target:
            first = (i + 1, cumulative, acc)
    return {"epochs": epochs, "total_seconds": setup + sum(s for s, _ in per_epoch),
            "final_test_accuracy": per_epoch[-1][1], "first_reach": first}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data" / "mnist.npz"))
    ap.add_argument("--target", type=float, default=0.99)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    data = str(Path(args.data).resolve())
    print("A. kerascnn " + " ".join(RECIPE), flush=True)
    a = run_kerascnn(data)
    print(f"   {a}", flush=True)
    print("B. Keras 'Simple MNIST convnet' example (batch 128, Adam, 15 epochs)", flush=True)
    b = run_keras_example(data, args.target)
    print(f"   {json.dumps(b)}", flush=True)
    import keras
    import tensorflow as tf

    from kerascnn.bench import cpu_name

    cpu = cpu_name()
    first = b["first_reach"]
    b_time = f"{first[1]:.1f} s (epoch {first[0]}, {first[2]:.2%})" if first else f"not reached in {b['epochs']} epochs"
    ratio = f"{first[1] / a['train_seconds']:.1f}x" if first and a["test_accuracy"] >= args.target else "n/a"
    lines = [f"\n### Time to {args.target:.1%} test accuracy on MNIST, {datetime.datetime.now():%Y-%m-%d %H:%M}",
             f"{cpu}; Python {platform.python_version()}, TensorFlow {tf.__version__}, "
             f"Keras {keras.__version__}; full MNIST (60,000 train / 10,000 test).\n",
             "| recipe | epochs | training time | wall time | test accuracy | time to target |",
             "|---|---|---|---|---|---|",
             f"| kerascnn `{' '.join(RECIPE)} --data mnist.npz` ({a['precision']}) | {a['epochs']} | "
             f"{a['train_seconds']:.1f} s | {a['wall_seconds']:.1f} s (incl. start-up, data, saving) | "
             f"{a['test_accuracy']:.2%} | {a['train_seconds']:.1f} s |",
             f"| Keras example (batch 128, Adam, 15 epochs, dropout 0.5, float32) | {b['epochs']} | "
             f"{b['total_seconds']:.1f} s | — | {b['final_test_accuracy']:.2%} | {b_time} |",
             f"\nkerascnn reaches the target {ratio} faster (training time to the target, the example's "
             f"validation passes included as the example runs them)."]
    publish(lines, record=not args.no_record)


if __name__ == "__main__":
    main()
