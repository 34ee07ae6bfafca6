"""Data from disk, every path in ONE run: kerascnn vs ``keras.utils.image_dataset_from_directory``
(+ ``model.fit`` / ``model.predict`` / ``model.evaluate``) vs torchvision ``ImageFolder`` + ``DataLoader``,
on the same files (issue 25).

Makes (or reuses, ``--data-dir``) N 64x64 JPEGs per colour (gray and RGB), each as ``train/CLASS/``
+ ``test/CLASS/`` (test = N/4), plus a CSV manifest of the training files and TFRecord shards
(``kerascnn shards``' writer). Then, variants interleaved (A, B, C, A, B, C, ...), ``--repeats``
times, medians [min-max]:

1. start-up on the RGB training folder: kerascnn's ``count_files`` + ``stream.scan`` (what ``train``
   does before its first batch) vs Keras's ``image_dataset_from_directory`` (listing) vs
   torchvision's ``ImageFolder`` (listing);
2. one pass of decode (+ resize) + batch, gray and RGB, 64->32 and 64->64: images/s and CPU
   milliseconds per image (process CPU, every thread; torch: its workers too), for kerascnn's folder
   stream, CSV manifest stream, TFRecord stream and in-memory load (``load_data`` +
   ``prepare_images`` + ``train_dataset``; its load is the start-up) vs Keras vs torchvision;
3. training: ``kerascnn train convnet --stream on`` vs ``model.fit`` on Keras's pipeline (same
   architecture, Adam, batch 64, 32x32 gray, float32), each in a fresh process; epoch 2 images/s;
4. ``predict`` on the test folder (``prediction.iter_predictions``) vs Keras's pipeline +
   ``model.predict``; 5. ``evaluate`` on the test split vs Keras's pipeline + ``model.evaluate``.

    python benchmarks/data_speed.py --images 20000 --repeats 3 --torch /work/torchenv/bin/python
    python benchmarks/data_speed.py --images 2000 --repeats 1 --no-record          # a quick look
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

BATCH = 64
CONFIGS = (("gray", 1, 32), ("gray", 1, 64), ("rgb", 3, 32), ("rgb", 3, 64))   # (files, model channels, to)


# --------------------------------------------------------------------------- data
def make_split(root: Path, n: int, size: int, gray: bool, seed: int, classes: int = 10) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = np.random.default_rng(0).integers(0, 256, (classes, size, size, 3), dtype=np.uint8)
    for k in range(classes):
        (root / f"class{k:02d}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        k = i % classes
        img = np.clip(base[k].astype(int) + rng.integers(-30, 30, (size, size, 3)), 0, 255).astype(np.uint8)
        im = Image.fromarray(img)
        (im.convert("L") if gray else im).save(root / f"class{k:02d}" / f"{i:06d}.jpg", quality=90)


def make_data(base: Path, n: int, size: int, shards: int) -> dict:
    """{colour: {"folder", "train", "test", "manifest", "shards"}}; reused when complete."""
    from kerascnn.data import formats

    out = {}
    for colour in ("gray", "rgb"):
        root = base / colour
        done = root / ".complete"
        if not done.is_file():
            import shutil

            shutil.rmtree(root, ignore_errors=True)
            make_split(root / "train", n, size, colour == "gray", 1)
            make_split(root / "test", n // 4, size, colour == "gray", 2)
            files = sorted((root / "train").rglob("*.jpg"))
            (root / "train.csv").write_text("path,label\n" + "".join(
                f"{f.relative_to(root)},{f.parent.name}\n" for f in files))
            formats.write_shards(root, base / f"{colour}-shards", shards)
            done.write_text("ok\n")
        out[colour] = {"folder": root, "train": root / "train", "test": root / "test",
                       "manifest": root / "train.csv", "shards": base / f"{colour}-shards"}
    return out


# --------------------------------------------------------------------------- measuring
def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def load_average() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def timed_pass(make) -> dict:
    """``make()`` -> a dataset (its time is the start-up); then one pass: first batch, images/s of the
    rest, process CPU per image of the pass (every thread)."""
    c0, t0 = time.process_time(), time.perf_counter()
    ds = make()
    startup = time.perf_counter() - t0
    c1, t1 = time.process_time(), time.perf_counter()
    it = iter(ds)
    first = next(it)
    n0 = int(first[0].shape[0])
    t2 = time.perf_counter()
    n = 0
    for xb, _ in it:
        n += int(xb.shape[0])
    t3 = time.perf_counter()
    return {"startup": startup, "first": t2 - t1, "ips": n / (t3 - t2), "images": n + n0,
            "cpu_per_image": (time.process_time() - c1) / (n + n0), "cpu_startup": c1 - c0,
            "e2e": (n + n0) / (t3 - t0)}


def kerascnn_stream(path: Path, channels: int, to: int) -> dict:
    from kerascnn.data import stream

    holder = {}

    def make():
        x, y, _, _, _ = stream.scan(path, 0)
        x = dataclasses.replace(x, size=(to, to), channels=channels)
        holder["n"] = len(x)
        return stream.stream_dataset(x, y, BATCH, 0, 0, 1)

    return timed_pass(make)


def kerascnn_memory(path: Path, channels: int, to: int) -> dict:
    from kerascnn import data as D

    def make():
        d = D.load_data(data=str(path), seed=0)
        xs = D.prepare_images(d.x_train, (to, to), channels, d.pixel_scale)
        return D.train_dataset(xs, d.y_train, BATCH, 0, 0, 1)

    return timed_pass(make)


def keras_folder(path: Path, channels: int, to: int, shuffle: bool = True, labels="inferred"):
    import keras

    return keras.utils.image_dataset_from_directory(path, labels=labels, image_size=(to, to), batch_size=BATCH,
                                                    color_mode="grayscale" if channels == 1 else "rgb",
                                                    shuffle=shuffle, seed=0, verbose=False)


def keras_pass(path: Path, channels: int, to: int) -> dict:
    return timed_pass(lambda: keras_folder(path, channels, to))


def torch_pass(python: str, path: Path, channels: int, to: int) -> dict:
    r = subprocess.run([python, str(HERE / "torch_imagefolder.py"), str(path), "--to", str(to), "--channels",
                        str(channels), "--batch", str(BATCH), "--workers", str(os.cpu_count() or 2)],
                       capture_output=True, text=True)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("{")), None)
    if line is None:
        raise RuntimeError(f"torch pass failed: {r.stderr[-500:]}")
    out = json.loads(line)
    out["e2e"] = out["images"] / (out["startup"] + out["first"] + (out["images"] - BATCH) / out["ips"])
    return out


def startup_only(paths: dict, torch_python: str | None) -> dict:
    """Listing (+ header pass) on the RGB training folder."""
    import keras

    from kerascnn.data import stream

    root = paths["rgb"]["train"]
    t0 = time.perf_counter()
    n = stream.count_files(root)
    t1 = time.perf_counter()
    stream.scan(root, 0)
    t2 = time.perf_counter()
    keras.utils.image_dataset_from_directory(root, image_size=(32, 32), batch_size=BATCH, seed=0, verbose=False)
    t3 = time.perf_counter()
    out = {"kerascnn": t2 - t0, "count": t1 - t0, "scan": t2 - t1, "keras": t3 - t2, "files": n}
    if torch_python:
        r = subprocess.run([torch_python, "-c", "import sys, time; from torchvision import datasets; "
                            "t = time.perf_counter(); datasets.ImageFolder(sys.argv[1]); "
                            "print(time.perf_counter() - t)", str(root)], capture_output=True, text=True)
        out["torch"] = float(r.stdout.strip().splitlines()[-1])
    return out


# --------------------------------------------------------------------------- training, predict, evaluate
def kerascnn_train(folder: Path, run_dir: Path, epochs: int) -> dict:
    import shutil

    shutil.rmtree(run_dir, ignore_errors=True)
    c0, t0 = children_cpu(), time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "kerascnn", "train", "convnet", "--data", str(folder), "--stream", "on",
                        "--image-size", "32", "--epochs", str(epochs), "--batch-size", str(BATCH), "--val-split", "0",
                        "--precision", "float32", "--optimizer", "adam", "--seed", "0", "-q", "--run-dir",
                        str(run_dir)], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(HERE.parent)))
    wall = time.perf_counter() - t0
    if r.returncode:
        raise RuntimeError(f"kerascnn train failed: {r.stderr[-800:]}")
    import csv

    rows = list(csv.DictReader(open(run_dir / "history.csv")))
    n = (sum(1 for _ in (folder / "train").rglob("*.jpg")) // BATCH) * BATCH
    return {"ips": n / float(rows[-1]["seconds"]), "wall": wall, "cpu_per_image": (children_cpu() - c0) / (n * epochs)}


def keras_fit_child(folder: str, epochs: int) -> None:
    """In a fresh process: the same convnet, model.fit on image_dataset_from_directory."""
    import keras

    from kerascnn.registry import get_entry

    keras.utils.set_random_seed(0)
    ds = keras_folder(Path(folder) / "train", 1, 32)
    ds = ds.map(lambda x, y: (x / 255.0, y), num_parallel_calls=-1).prefetch(-1)
    model = get_entry("convnet").build((32, 32, 1), 10)
    model.compile(keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    times = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t)

    model.fit(ds, epochs=epochs, verbose=0, callbacks=[Clock()])
    n = sum(int(x.shape[0]) for x, _ in ds.take(-1).map(lambda x, y: (x[:, :1, :1], y)))
    print("RESULT " + json.dumps({"ips": n / times[-1], "images": n * epochs}))


def keras_fit(folder: Path, epochs: int) -> dict:
    c0, t0 = children_cpu(), time.perf_counter()
    r = subprocess.run([sys.executable, __file__, "--child-fit", str(folder), "--epochs", str(epochs)],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(HERE.parent)))
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"keras fit failed: {r.stderr[-800:]}")
    out = json.loads(line[7:])
    return {"ips": out["ips"], "wall": time.perf_counter() - t0, "cpu_per_image": (children_cpu() - c0) / out["images"]}


def kerascnn_predict(run_dir: Path, test: Path) -> dict:
    from kerascnn.prediction import iter_predictions

    c0, t0 = time.process_time(), time.perf_counter()
    n = sum(1 for _ in iter_predictions(str(run_dir), [str(test)], top_k=5))
    return {"ips": n / (time.perf_counter() - t0), "cpu_per_image": (time.process_time() - c0) / n,
            "wall": time.perf_counter() - t0}


def keras_predict(run_dir: Path, test: Path) -> dict:
    import keras

    c0, t0 = time.process_time(), time.perf_counter()
    model = keras.models.load_model(run_dir / "best.keras")
    ds = keras_folder(test, 1, 32, shuffle=False, labels=None).map(lambda x: x / 255.0)
    probs = model.predict(ds, verbose=0)
    np.argsort(-probs, axis=1)[:, :5]
    return {"ips": len(probs) / (time.perf_counter() - t0), "cpu_per_image": (time.process_time() - c0) / len(probs),
            "wall": time.perf_counter() - t0}


def kerascnn_evaluate(run_dir: Path, folder: Path, out: Path, plot: bool = True) -> dict:
    """``evaluate`` on the test split; ``plot`` False: without rendering confusion.png (matplotlib,
    about a second, which ``model.evaluate`` does not do)."""
    from kerascnn import plots
    from kerascnn.evaluation import evaluate

    real = plots.plot_confusion
    if not plot:
        plots.plot_confusion = lambda *a, **k: None
    c0, t0 = time.process_time(), time.perf_counter()
    try:
        r = evaluate(str(run_dir), data=str(folder), split="test", out_dir=str(out))
    finally:
        plots.plot_confusion = real
    return {"ips": r["images"] / (time.perf_counter() - t0), "cpu_per_image": (time.process_time() - c0) / r["images"],
            "accuracy": r["accuracy"], "wall": time.perf_counter() - t0}


def keras_evaluate(run_dir: Path, test: Path) -> dict:
    import keras

    c0, t0 = time.process_time(), time.perf_counter()
    model = keras.models.load_model(run_dir / "best.keras")
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    ds = keras_folder(test, 1, 32, shuffle=False).map(lambda x, y: (x / 255.0, y))
    n = sum(1 for f in test.rglob("*.jpg"))
    _, acc = model.evaluate(ds, verbose=0)
    return {"ips": n / (time.perf_counter() - t0), "cpu_per_image": (time.process_time() - c0) / n, "accuracy": acc,
            "wall": time.perf_counter() - t0}


# --------------------------------------------------------------------------- report
def fmt(values: list, spec: str = ",.0f") -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return format(med, spec)
    return f"{format(med, spec)} [{format(min(values), spec)}-{format(max(values), spec)}]"


def main(argv=None) -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child-fit":
        q = argparse.ArgumentParser()
        q.add_argument("--epochs", type=int)
        return keras_fit_child(sys.argv[2], q.parse_args(sys.argv[3:]).epochs)
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=20000, help="training images per colour (test: a quarter)")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--shards", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--data-dir", help="where the images are made or reused (default: a temporary folder)")
    p.add_argument("--torch", help="python of a PyTorch + torchvision venv (torchvision ImageFolder rows)")
    p.add_argument("--skip", default="", help="comma list of sections to skip: startup,pass,train,predict,evaluate")
    p.add_argument("--label", default="", help="a note for the heading (e.g. the commit measured)")
    p.add_argument("--no-record", action="store_true")
    a = p.parse_args(argv)
    skip = set(filter(None, a.skip.split(",")))
    import tensorflow as tf

    from benchmarks._common import publish

    tmp = tempfile.TemporaryDirectory()
    base = Path(a.data_dir) if a.data_dir else Path(tmp.name)
    base.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    paths = make_data(base, a.images, a.size, a.shards)
    made = time.perf_counter() - t0
    load_before = load_average()
    work = Path(tempfile.mkdtemp(prefix="kerascnn-dataspeed-"))
    res: dict = {}

    def add(key, value):
        res.setdefault(key, []).append(value)
        print(key, {k: round(v, 4) if isinstance(v, float) else v for k, v in value.items()}, flush=True)

    for r in range(a.repeats):
        if "startup" not in skip:
            add("startup", startup_only(paths, a.torch))
        if "pass" not in skip:
            for colour, ch, to in CONFIGS:
                pc = paths[colour]
                add((colour, to, "stream"), kerascnn_stream(pc["folder"], ch, to))
                add((colour, to, "keras"), keras_pass(pc["train"], ch, to))
                if a.torch:
                    add((colour, to, "torch"), torch_pass(a.torch, pc["train"], ch, to))
                add((colour, to, "manifest"), kerascnn_stream(pc["manifest"], ch, to))
                add((colour, to, "tfrecord"), kerascnn_stream(pc["shards"], ch, to))
                if (colour, to) in (("gray", 32), ("rgb", 32)):
                    add((colour, to, "memory"), kerascnn_memory(pc["folder"], ch, to))
        if "train" not in skip:
            add("train-kerascnn", kerascnn_train(paths["gray"]["folder"], work / "run", a.epochs))
            add("train-keras", keras_fit(paths["gray"]["folder"], a.epochs))
        elif not (work / "run").is_dir() and not {"predict", "evaluate"} <= skip:
            kerascnn_train(paths["gray"]["folder"], work / "run", 1)
        if "predict" not in skip:
            add("predict-kerascnn", kerascnn_predict(work / "run", paths["gray"]["test"]))
            add("predict-keras", keras_predict(work / "run", paths["gray"]["test"]))
        if "evaluate" not in skip:
            add("evaluate-kerascnn", kerascnn_evaluate(work / "run", paths["gray"]["folder"], work / f"eval{r}"))
            add("evaluate-kerascnn-noplot", kerascnn_evaluate(work / "run", paths["gray"]["folder"], work / f"ev{r}",
                                                              plot=False))
            add("evaluate-keras", keras_evaluate(work / "run", paths["gray"]["test"]))
    load_after = load_average()

    def col(key, field, spec=",.0f", scale=1.0):
        return fmt([row[field] * scale for row in res.get(key, []) if row.get(field) is not None], spec)

    n_te = a.images // 4
    lines = ["", f"## Data from disk, side by side (`benchmarks/data_speed.py --images {a.images} --repeats "
                 f"{a.repeats}{' --torch ' + a.torch if a.torch else ''}`){' — ' + a.label if a.label else ''}", "",
             f"{cpu_name()}, {os.cpu_count()} CPUs (shared; load average {load_before} before, {load_after} after), "
             f"TensorFlow {tf.__version__}; {a.images:,} training + {n_te:,} test {a.size}x{a.size} JPEGs per colour "
             f"(gray and RGB) in 10 class folders (made in {made:.0f} s), batch {BATCH}; median [min-max] of "
             f"{a.repeats} interleaved runs; CPU = process CPU seconds (every thread; torchvision: with its "
             f"{os.cpu_count()} workers) per image."]
    if "startup" in res:
        s = res["startup"]
        lines += ["", f"Start-up on the RGB training folder ({s[0]['files']:,} files, page cache warm):", "",
                  "| pipeline | start-up |", "|---|---|",
                  f"| kerascnn: count (`--stream auto`) + listing + header pass (`stream.scan`) | "
                  f"{col('startup', 'kerascnn', '.2f')} s (count {col('startup', 'count', '.2f')}, scan "
                  f"{col('startup', 'scan', '.2f')}) |",
                  f"| `keras.utils.image_dataset_from_directory` (listing) | {col('startup', 'keras', '.2f')} s |"]
        if a.torch:
            lines.append(f"| torchvision `ImageFolder` (listing) | {col('startup', 'torch', '.2f')} s |")
    if any(isinstance(k, tuple) for k in res):
        lines += ["", "One pass (decode, convert, resize, batch; kerascnn's in-memory row: load + prepare is its "
                      "start-up):", "",
                  "| files -> model input | pipeline | start-up s | first batch s | images/s | CPU ms/image | "
                  "end to end images/s |", "|---|---|---|---|---|---|---|"]
        names = {"stream": "kerascnn folder stream", "manifest": "kerascnn CSV manifest stream",
                 "tfrecord": "kerascnn TFRecord stream", "memory": "kerascnn in memory",
                 "keras": "Keras `image_dataset_from_directory`", "torch": "torchvision `ImageFolder` + `DataLoader`"}
        for colour, ch, to in CONFIGS:
            for kind in ("stream", "manifest", "tfrecord", "memory", "keras", "torch"):
                key = (colour, to, kind)
                if key in res:
                    lines.append(f"| {colour} {a.size}->{to}x{ch} | {names[kind]} | {col(key, 'startup', '.2f')} | "
                                 f"{col(key, 'first', '.2f')} | {col(key, 'ips')} | "
                                 f"{col(key, 'cpu_per_image', '.3f', 1000)} | {col(key, 'e2e')} |")
    rows = [("train-kerascnn", "`kerascnn train convnet --stream on` (epoch 2)"),
            ("train-keras", "`model.fit` on `image_dataset_from_directory` (epoch 2)"),
            ("predict-kerascnn", f"`kerascnn predict RUN test/` ({n_te:,} files, model load included)"),
            ("predict-keras", "`image_dataset_from_directory` + `model.predict` (model load included)"),
            ("evaluate-kerascnn", "`kerascnn evaluate RUN --data DIR` (test split, model load and confusion.png "
                                  "included)"),
            ("evaluate-kerascnn-noplot", "the same without rendering confusion.png"),
            ("evaluate-keras", "`image_dataset_from_directory(test/)` + `model.evaluate` (model load included)")]
    if any(k in res for k, _ in rows):
        lines += ["", "Training (convnet, 32x32 gray, Adam, float32, fresh process each), predict and evaluate "
                      "on the gray folder (training CPU: the whole process, start-up included, per image trained):", "",
                  "| what | images/s | CPU ms/image | wall s |", "|---|---|---|---|"]
        for key, label in rows:
            if key in res:
                lines.append(f"| {label} | {col(key, 'ips')} | {col(key, 'cpu_per_image', '.3f', 1000)} | "
                             f"{col(key, 'wall', '.1f')} |")
    publish(lines, record=not a.no_record)
    import shutil

    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
