"""The keras.applications family (``kerascnn/models/keras_apps.py``), every architecture:

* figures at the natural input, 1000 classes: Keras's ``count_params()`` (all, trainable) and the
  Keras-model analysis's multiply-adds of the model kerascnn builds -- the figures ``kerascnn
  list`` shows (``--record`` prints them as ``FIGURES`` lines for the family file);
* equal outputs: ``keras.applications.<Name>(weights=None)`` with random weights and BatchNorm
  statistics, saved in the download layout (legacy HDF5), loaded by ``kerascnn.pretrained`` into the
  zoo model, both fed the same images through their own preprocessing (Keras:
  ``preprocess_input(x * 255)``; kerascnn: [0, 1] pixels, the normalisation inside the model);
* the zoo model saved as ``.keras`` and loaded back gives the same outputs.

    python benchmarks/keras_apps.py                        # every model, equality at 96x96 (min size if larger)
    python benchmarks/keras_apps.py --models mobilenetv2,efficientnetb0 --size 224 --no-record
    python benchmarks/keras_apps.py --record --no-equal    # only the figures, as FIGURES lines
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from _common import publish  # noqa: E402


def figures(name):
    import keras

    import kerascnn
    from kerascnn.keras_analysis import analyze_keras

    model = kerascnn.build(name)
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    report = analyze_keras(model)
    out = (int(model.count_params()), trainable, int(report.macs), len(report.unknown))
    del model, report
    keras.backend.clear_session()
    gc.collect()
    return out


def equal_outputs(name, size, tmp, n=2):
    """(max |diff| / max |ref|, same top-1 on every image, .keras round trip max |diff|, seconds)."""
    import keras

    import kerascnn
    from kerascnn import pretrained as P
    from kerascnn.registry import get_entry
    from test_weights import _randomise, _save_legacy

    app = get_entry(name).extra
    size = max(size, app.min_size)
    shape = (size, size, 3)
    t = time.perf_counter()
    ref = getattr(keras.applications, app.constructor)(weights=None, input_shape=shape, classes=10,
                                                       classifier_activation=None)
    _randomise(ref, 0)
    path = _save_legacy(ref, Path(tmp) / f"{name}.h5")
    x = np.random.default_rng(1).uniform(0, 1, (n,) + shape).astype("float32")
    want = np.asarray(ref.predict(getattr(keras.applications, app.module).preprocess_input(x * 255.0),
                                  verbose=0, batch_size=n), np.float64)
    del ref
    model = kerascnn.build(name, shape, 10)
    report = P.load_into(model, path, model_name=name)
    assert not report.fresh, report.fresh
    model.layers[-1].activation = keras.activations.linear
    got = np.asarray(model.predict(x, verbose=0, batch_size=n), np.float64)
    rel = float(np.abs(got - want).max() / np.abs(want).max())
    same = bool((got.argmax(1) == want.argmax(1)).all())
    model.save(Path(tmp) / f"{name}.keras")
    back = keras.models.load_model(Path(tmp) / f"{name}.keras", compile=False)
    trip = float(np.abs(np.asarray(back.predict(x, verbose=0, batch_size=n)) - got).max())
    path.unlink()
    (Path(tmp) / f"{name}.keras").unlink()
    del model, back
    keras.backend.clear_session()
    gc.collect()
    return rel, same, trip, size, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="", help="comma list (default: the whole family)")
    ap.add_argument("--size", type=int, default=96, help="input side for the equality check")
    ap.add_argument("--record", action="store_true", help="print the FIGURES lines for kerascnn/models/keras_apps.py")
    ap.add_argument("--no-equal", action="store_true", help="figures only")
    ap.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = ap.parse_args()
    from kerascnn.tfquiet import import_tensorflow

    import_tensorflow()
    from kerascnn.models.keras_apps import FIGURES
    from kerascnn.registry import list_models

    names = [n for n in args.models.split(",") if n] or list_models(kind="keras")
    rows, record = [], []
    with tempfile.TemporaryDirectory(prefix="kerascnn-keras-apps-") as tmp:
        for name in names:
            params, trainable, macs, unknown = figures(name)
            listed = FIGURES.get(name)
            ok = "yes" if listed == (params, trainable, macs) else "NO (recorded: %s)" % (listed,)
            record.append(f"    {name!r}: ({params:_}, {trainable:_}, {macs:_}),")
            row = f"| {name} | {params:,} | {macs / 1e9:.2f} G | {unknown} | {ok} |"
            if not args.no_equal:
                rel, same, trip, size, secs = equal_outputs(name, args.size, tmp)
                row += f" {size}x{size} | {rel:.1e} | {'yes' if same else 'NO'} | {trip:.1e} | {secs:.0f} s |"
            rows.append(row)
            print(row, flush=True)
    import platform

    head = "| model | params | MACs | layers not analysed | = recorded |"
    sep = "|---|---|---|---|---|"
    if not args.no_equal:
        head += " equality input | max rel. diff vs keras.applications | same top-1 | .keras round trip | time |"
        sep += "---|---|---|---|---|"
    lines = [f"\n### keras.applications family: figures and equal outputs ({len(names)} models; "
             f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores)", "", head, sep, *rows]
    publish(lines, record=not args.no_record)
    if args.record:
        print("FIGURES = {\n" + "\n".join(record) + "\n}")


if __name__ == "__main__":
    main()
