"""Every keras.applications model through `kerascnn summary FILE.keras`: parameters against Keras's own
count, multiply-adds against fvcore on the PyTorch twin.

    python benchmarks/keras_applications.py [NAME ...] [--no-record]

For each model: built with ``weights=None`` (at its default input; MobileNetV3's input size is left
open by Keras, analysed with ``--input-shape 224,224,3``), saved with ``model.save`` as ``.keras`` in a
temporary directory, and analysed in a fresh process in which TensorFlow cannot be imported
(``kerascnn summary FILE --format json``: config.json only). Checked: total and trainable parameters
equal Keras's ``count_params()`` and trainable weights exactly, no layer left without a rule, and
multiply-adds equal ``tests/fixtures/fvcore_twins.json`` (written by ``benchmarks/fvcore_twins.py`` in
the PyTorch environment) where the model has a torchvision or timm twin. Prints the table (markdown)
and appends it to RESULTS.md. Takes about 10 minutes on 2 CPU cores (saving ~2.6 GB of random weights).
"""
from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

from _common import publish  # noqa: E402
from conftest import _HIDE_TF  # noqa: E402  (the CLI in a process where TensorFlow cannot be found)

TWINS = json.loads((ROOT / "tests" / "fixtures" / "fvcore_twins.json").read_text())


def analyse_without_tensorflow(path: Path, shape) -> tuple:
    args = ["summary", str(path), "--format", "json"] + (["--input-shape", ",".join(map(str, shape))] if shape else [])
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("KERAS_BACKEND", None)
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", _HIDE_TF, *args], capture_output=True, text=True, env=env, timeout=600)
    wall = time.perf_counter() - t
    if r.returncode:
        raise SystemExit(f"{path.name}: {r.stderr.strip()[-500:]}")
    return json.loads(r.stdout), wall


def one(name: str, tmp: Path) -> dict:
    import keras
    import numpy as np

    model = getattr(keras.applications, name)(weights=None)
    shape = None if None not in model.input_shape[1:3] else (224, 224, model.input_shape[3])
    params = int(model.count_params())
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    path = tmp / f"{name}.keras"
    model.save(path)
    del model
    keras.backend.clear_session()
    gc.collect()
    d, wall = analyse_without_tensorflow(path, shape)
    size = path.stat().st_size
    path.unlink()
    twin = TWINS["twins"].get(name)
    return {"name": name, "input": d["input_shape"], "params": d["total_params"], "keras_params": params,
            "trainable": d["trainable_params"], "keras_trainable": trainable, "macs": d["macs"],
            "not_analysed": len(d["not_analysed"]), "file_mb": size / 2**20, "seconds": wall,
            "twin": twin["twin"] if twin else TWINS["no_twin"].get(name, "none"),
            "fvcore": twin["fvcore_macs"] if twin else None}


def main(argv):
    import keras

    from kerascnn.cpu import cpu_description

    record = "--no-record" not in argv
    names = [a for a in argv if not a.startswith("--")] or [n for n in dir(keras.applications) if n[0].isupper()]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            r = one(name, Path(tmp))
            rows.append(r)
            print(f"{name:18s} params {r['params']:>12,} ({'=' if r['params'] == r['keras_params'] else '!='} Keras)"
                  f"  MACs {r['macs']:>16,} ({_vs(r)})  {r['seconds']:.2f} s", flush=True)
    v = TWINS["versions"]
    lines = [f"\n## keras.applications through `kerascnn summary FILE.keras` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
             "", f"`python benchmarks/keras_applications.py`; keras {keras.__version__}; fvcore twins: torch {v['torch']}, "
             f"torchvision {v['torchvision']}, timm {v['timm']}, fvcore {v['fvcore']}; CPU: {cpu_description()}, load {os.getloadavg()[0]:.1f}", "",
             "| model | input | params (= Keras) | trainable (= Keras) | MACs | fvcore on the twin | twin |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['input'][0]} | {r['params']:,}{'' if r['params'] == r['keras_params'] else ' (Keras ' + format(r['keras_params'], ',') + ')'} "
                     f"| {r['trainable']:,}{'' if r['trainable'] == r['keras_trainable'] else ' (!=)'} "
                     f"| {r['macs']:,} | {_vs(r)} | {r['twin']} |")
    same_p = sum(r["params"] == r["keras_params"] and r["trainable"] == r["keras_trainable"] for r in rows)
    twins = [r for r in rows if r["fvcore"] is not None]
    same_m = sum(r["macs"] == r["fvcore"] for r in twins)
    lines += ["", f"Parameters equal Keras's for {same_p} of {len(rows)} models; multiply-adds equal fvcore's for "
              f"{same_m} of the {len(twins)} with a twin; layers without a rule: {sum(r['not_analysed'] for r in rows)}. "
              f"Each file analysed in a process without TensorFlow: median {_median([r['seconds'] for r in rows]):.2f} s "
              f"end to end (max {max(r['seconds'] for r in rows):.2f} s)."]
    publish(lines, record)
    return 0 if same_p == len(rows) and same_m == len(twins) else 1


def _vs(r) -> str:
    if r["fvcore"] is None:
        return "no twin"
    return "= fvcore" if r["macs"] == r["fvcore"] else f"fvcore {r['fvcore']:,}"


def _median(v):
    v = sorted(v)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
