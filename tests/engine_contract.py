"""One contract check for every training engine (kerascnn.engines.base.Engine), used by
tests/test_engine_contract.py: in-process for the TensorFlow engine, in a process of its own
(KERAS_BACKEND=jax, `python tests/engine_contract.py jax FOLDER`) for the JAX engine. Not a
test module itself. Tiny model and data: the point is the contract, not the learning."""
import json
import os
import sys

import numpy as np

BATCH, K = 16, 3


def tiny_data(n=96, seed=0):
    """Two separable classes of 8x8x1 images in [0, 1]."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = 0.2 * rng.random((n, 8, 8, 1)).astype(np.float32)
    x[y == 1, :4] += 0.7
    return x, y.astype(np.int64)


def build_model():
    import keras

    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="tanh"),
                             keras.layers.Flatten(), keras.layers.Dropout(0.25),
                             keras.layers.Dense(2, activation="softmax")])


def new_engine(make_engine, lr=1e-2):
    import keras

    keras.utils.set_random_seed(0)
    engine = make_engine(2)
    engine.build(build_model, lambda: keras.optimizers.Adam(lr))
    return engine


def train_epochs(engine, x, y, first, last, epochs):
    from kerascnn.engines.base import StepData

    engine.set_train_data(StepData(x, y, BATCH, 5, first, epochs))
    steps = len(x) // BATCH
    for epoch in range(first, last):
        engine.reseed(5, epoch)
        engine.train_steps(steps)


def weights(engine):
    engine.sync_to_model()
    return [np.asarray(w) for w in engine.model.get_weights()]


def check(make_engine, folder, tmp) -> dict:
    """Every clause of the contract on ``make_engine(num_classes) -> Engine``; returns what it saw."""
    from kerascnn.engines.base import Engine, StepData
    from kerascnn.errors import ConfigError
    from kerascnn.registry import get_entry
    from kerascnn.training import checkpoint
    from kerascnn.training.config import TrainConfig

    x, y = tiny_data()
    out = {}
    # describing itself and deciding before the model
    engine = new_engine(make_engine)
    rec = engine.record("float32")
    out["is_engine"] = isinstance(engine, Engine)
    out["record_keys"] = list(rec)
    out["describe"] = engine.describe()
    out["readers"] = list(engine.readers())
    out["precision"] = engine.precision(None, get_entry("lenet5").analyze())
    engine.check(TrainConfig(model="convnet"))
    # build, K steps (counts), evaluate, learning rate
    engine.set_train_data(StepData(x, y, BATCH, 5, 0, 1))
    engine.reseed(5, 0)
    sums = engine.train_steps(K)
    out["k_steps"] = [float(v) for v in sums]
    out["evaluate"] = [float(v) for v in engine.evaluate(x, y, 32)]
    out["lr"] = engine.learning_rate()
    # checkpoint round trip into a fresh engine: same weights, same scores
    path = os.path.join(tmp, "state.npz")
    checkpoint.save_state(path, engine.get_state(), {"epoch": 0, "best": 0.0, "history": [], "optimizer": "adam"})
    other = new_engine(make_engine)
    checkpoint.load_state(path, other, "adam")
    out["round_trip_equal"] = all(np.array_equal(a, b) for a, b in zip(weights(engine), weights(other)))
    out["round_trip_scores_equal"] = bool(np.array_equal(other.evaluate(x, y, 32), engine.evaluate(x, y, 32)))
    # resume: 3 epochs uninterrupted == 1 epoch, state saved, a new engine resumes epochs 2-3 (bitwise)
    full = new_engine(make_engine)
    train_epochs(full, x, y, 0, 3, 3)
    cut = new_engine(make_engine)
    train_epochs(cut, x, y, 0, 1, 3)
    checkpoint.save_state(path, cut.get_state(), {"epoch": 0, "best": 0.0, "history": [], "optimizer": "adam"})
    resumed = new_engine(make_engine)
    checkpoint.load_state(path, resumed, "adam")
    train_epochs(resumed, x, y, 1, 3, 3)
    out["resume_bitwise"] = all(np.array_equal(a, b) for a, b in zip(weights(full), weights(resumed)))
    out["resume_moved"] = not all(np.array_equal(a, b) for a, b in zip(weights(full), weights(cut)))
    # the same from a state an older kerascnn wrote (no Dropout seed states g{i}: reseeded per epoch)
    older = {k: v for k, v in cut.get_state().items() if not k.startswith("g")}
    checkpoint.save_state(path, older, {"epoch": 0, "best": 0.0, "history": [], "optimizer": "adam"})
    resumed = new_engine(make_engine)
    checkpoint.load_state(path, resumed, "adam")
    train_epochs(resumed, x, y, 1, 3, 3)
    out["seed_states_saved"] = sum(k.startswith("g") for k in cut.get_state())
    out["resume_older_state_bitwise"] = all(np.array_equal(a, b) for a, b in zip(weights(full), weights(resumed)))
    out.update(inside_epoch(make_engine, x, y, path))
    # NaN stop: a step whose loss is not finite reports it in its sums (the loop stops on it)
    wild = new_engine(make_engine)
    wild.set_train_data(StepData(np.where(np.arange(len(x))[:, None, None, None] % 2, np.nan, x).astype(np.float32),
                                 y, BATCH, 5, 0, 1))
    out["nan_reported"] = not np.isfinite(wild.train_steps(1)[0])
    # streaming from disk, or a clear one-line refusal before anything is touched
    from kerascnn.data.source import as_source
    from kerascnn.data.stream import scan

    files, labels, _, _, _ = scan(__import__("pathlib").Path(folder), 0)
    import dataclasses

    source = as_source(dataclasses.replace(files, size=(8, 8), channels=1), labels)
    streamer = new_engine(make_engine)
    try:
        streamer.check_source(source)
    except ConfigError as e:
        out["stream"] = {"refused": str(e)}
    else:
        streamer.set_train_data(StepData(source, labels, BATCH, 5, 0, 1))
        streamer.reseed(5, 0)
        got = streamer.train_steps(1)
        out["stream"] = {"count": float(got[2]), "finite": bool(np.isfinite(got[0])),
                         "evaluated": float(streamer.evaluate(source, labels, 8)[2]), "files": len(source)}
        streamer.release_data()                 # the end of a run: the stream (and its reader threads) let go
        try:
            streamer.train_steps(1)
        except RuntimeError as e:
            out["stream"]["after_release"] = str(e)
    return out


def inside_epoch(make_engine, x, y, path) -> dict:
    """Resume inside an epoch: 3 epochs uninterrupted (one call per epoch) == 1 epoch and 2 steps
    of epoch 2, the state saved there (with the Dropout seed states), a new engine continuing at
    step 3 of epoch 2 with the epoch's running sums: bitwise weights and epoch sums. Without the
    seed states the Dropout masks differ."""
    from kerascnn.engines.base import StepData
    from kerascnn.training import checkpoint

    steps = len(x) // BATCH
    full = new_engine(make_engine)
    full.set_train_data(StepData(x, y, BATCH, 5, 0, 3))
    sums = []
    for epoch in range(3):
        full.reseed(5, epoch)
        sums.append(full.train_steps(steps))
    cut = new_engine(make_engine)
    cut.set_train_data(StepData(x, y, BATCH, 5, 0, 3))
    cut.reseed(5, 0)
    cut.train_steps(steps)
    cut.reseed(5, 1)
    part = cut.train_steps(1)
    part = cut.train_steps(1, part)
    meta = {"epoch": 0, "best": 0.0, "history": [], "optimizer": "adam", "step": 2, "steps": steps,
            "totals": [float(t) for t in part]}
    out = {}
    for name, keep in (("inside_bitwise", lambda k: True), ("inside_without_seeds", lambda k: not k.startswith("g"))):
        checkpoint.save_state(path, {k: v for k, v in cut.get_state().items() if keep(k)}, meta)
        resumed = new_engine(make_engine)
        meta_back = checkpoint.load_state(path, resumed, "adam")
        step, totals = checkpoint.position(path, meta_back, steps)
        resumed.set_train_data(StepData(x, y, BATCH, 5, 1, 3, first_step=step))
        epoch_sums = resumed.train_steps(steps - step, totals)      # no reseed: the saved seed state
        resumed.reseed(5, 2)
        resumed.train_steps(steps)
        out[name] = all(np.array_equal(a, b) for a, b in zip(weights(full), weights(resumed)))
        out[name + "_sums"] = bool(np.array_equal(epoch_sums, sums[1]))
    return out


def write_folder(root) -> str:
    """Two class folders of 8x8 gray PNGs (24 + 24 files, so the scan keeps 38 for training)."""
    from images import labelled_folder

    x, y = tiny_data(48, seed=1)
    return str(labelled_folder(root, (x[..., 0] * 255).astype(np.uint8), y, "ab"))


if __name__ == "__main__":   # python tests/engine_contract.py jax FOLDER TMP
    assert sys.argv[1] == "jax" and os.environ.get("KERAS_BACKEND") == "jax"
    from kerascnn.engines.jax import JaxEngine

    result = check(lambda k: JaxEngine(k), sys.argv[2], sys.argv[3])
    print("RESULT " + json.dumps(result))
