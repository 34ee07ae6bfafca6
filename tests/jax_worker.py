"""Runs JAX-engine checks in a process of its own (KERAS_BACKEND=jax, set by the caller) and
prints one JSON line; used by tests/test_jax_engine.py. Not a test module itself."""
import json
import os
import sys

assert os.environ.get("KERAS_BACKEND") == "jax"

import numpy as np  # noqa: E402

from kerascnn.engines.base import StepData  # noqa: E402
from kerascnn.engines.jax import JaxEngine, set_random_seed  # noqa: E402

# a small net with everything that carries state: BatchNorm statistics and Dropout seeds
SMALL = "conv3-8p1, bn, relu, maxpool2, conv3-16, relu, maxpool2, flatten, dropout0.25, fc32, relu, fc10, softmax"


def digits(n=None):
    """sklearn's 8x8 digits upscaled 3x (nearest) and padded to 28x28, in [0, 1] (no TensorFlow)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.pad(np.kron(d.images, np.ones((3, 3))), ((0, 0), (2, 2), (2, 2)))[..., None] / 16.0
    return x[:n].astype(np.float32), d.target[:n].astype(np.int64)


def engine(model="small", optimizer="sgd", lr=0.05, devices=None, seed=0, smoothing=0.0, fused=None):
    import keras

    from kerascnn.schedules import make_optimizer

    set_random_seed(seed)
    if model == "small":
        from kerascnn.keras_build import build_sequential
        from kerascnn.speclang import parse

        build = lambda: build_sequential(parse(SMALL), (28, 28, 1), name="small")  # noqa: E731
    else:
        from kerascnn.registry import get_entry

        name, _, variant = model.partition(":")
        build = lambda: get_entry(name).build((28, 28, 1), 10, **({"variant": variant} if variant else {}))  # noqa
    e = JaxEngine(10, label_smoothing=smoothing, devices=devices, fused=fused)
    e.build(build, lambda: make_optimizer(optimizer, lr))
    assert keras.backend.backend() == "jax"
    return e


def weights(e):
    e.sync_to_model()
    return [np.asarray(w, np.float64) for w in e.model.get_weights()]


def check_train(model, epochs, n_train):
    x, y = digits()
    xtr, ytr, xte, yte = x[:n_train], y[:n_train], x[n_train:], y[n_train:]
    e = engine(model, "adam", 2e-3)
    e.set_train_data(StepData(xtr, ytr, 64, 0, 0, epochs))
    spe = len(xtr) // 64
    hist = []
    for ep in range(epochs):
        e.reseed(0, ep)
        t = e.train_steps(spe)
        hist.append(float(t[1] / t[2]))
    v = e.evaluate(xte, yte, 100)
    return {"train_acc": hist, "test_acc": float(v[1] / v[2]), "test_count": float(v[2]),
            "test_loss": float(v[0] / v[2]), "steps": spe * epochs}


def check_fused(k):
    """K steps in one call vs K calls of one step, from the same start (incl. BN + Dropout), on
    the fused path (one compiled loop; the CPU default is single steps), and the same K steps as
    K separately compiled single steps (the CPU default)."""
    x, y = digits(64 * k)
    out = []
    for calls, fused in (([k], True), ([1] * k, True), ([k], False)):
        e = engine(fused=fused)
        e.set_train_data(StepData(x, y, 64, 3, 0, 1))
        e.reseed(3, 0)
        sums = sum(e.train_steps(c) for c in calls)
        out.append((weights(e), sums))
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(out[0][0], out[1][0]))
    return {"max_abs_diff": diff, "sums": [list(map(float, o[1])) for o in out]}


def check_streaming():
    """The streaming path (data too big to keep on the device: host-gathered chunks, the last one
    padded) against the resident path, both single-step and fused; and streaming evaluation."""
    from kerascnn.engines import jax_feed as J   # where the engine reads its size limits

    x, y = digits(64 * 6 + 10)
    out = {}
    for mode in ("resident", "streaming"):
        for fused in (False, True):
            if mode == "streaming":
                J.RESIDENT_BYTES, J.STREAM_CHUNK_BYTES = 0, 4 * 64 * x[0].nbytes   # chunks of 4 steps: 4 + 2
            e = engine(fused=fused)
            e.set_train_data(StepData(x, y, 64, 2, 0, 2))
            e.reseed(2, 0)
            sums = e.train_steps(6)
            e.reseed(2, 1)
            sums = sums + e.train_steps(6)
            ev = e.evaluate(x, y, 50)
            out[f"{mode}-{fused}"] = (weights(e), sums, ev)
            J.RESIDENT_BYTES, J.STREAM_CHUNK_BYTES = 2 << 30, 256 << 20
    res = {}
    for k, (w, sums, ev) in out.items():
        ref = out["resident-" + k.split("-")[1]]     # the same step executable kind (fused or not)
        res[k] = {"max_abs_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(w, ref[0])),
                  "sums": list(map(float, sums)), "eval": list(map(float, ev))}
    return res


def check_resume():
    """Uninterrupted 3 epochs vs 1 epoch -> get_state -> new engine -> set_state -> 2 epochs."""
    x, y = digits(640)
    spe, epochs = 10, 3

    def run(e, first, last):
        e.set_train_data(StepData(x, y, 64, 5, first, epochs))
        for ep in range(first, last):
            e.reseed(5, ep)
            e.train_steps(spe)

    a = engine("small", "adam", 1e-3)
    w0 = weights(a)
    run(a, 0, 3)
    b = engine("small", "adam", 1e-3)
    run(b, 0, 1)
    state = {k: v.copy() for k, v in b.get_state().items()}
    c = engine("small", "adam", 1e-3, seed=99)   # different initial weights: everything must come from state
    c.set_state(state)
    run(c, 1, 3)
    wa, wc = weights(a), weights(c)
    sa, sc = a.get_state(), c.get_state()
    return {"bitwise_weights": all(np.array_equal(p, q) for p, q in zip(wa, wc)),
            "bitwise_state": sorted(sa) == sorted(sc) and all(np.array_equal(sa[k], sc[k]) for k in sa),
            "keys": sorted(sa), "iterations": float(sc["o:iteration"]),
            "changed": all(not np.array_equal(p, q) for p, q in zip(wa, w0))}


def check_devices():
    """One epoch on 1 host device vs the batch sharded over 2, plain SGD; records what the
    tolerance needs: per-weight sum over steps of |update| on one device."""
    import jax

    devs = jax.devices()
    x, y = digits(512)
    batch, steps = 64, 8
    one = engine(devices=devs[:1])
    one.set_train_data(StepData(x, y, batch, 1, 0, 1))
    one.reseed(1, 0)
    w_prev = weights(one)
    travel = [np.zeros_like(w) for w in w_prev]
    for _ in range(steps):
        one.train_steps(1)
        w = weights(one)
        travel = [t + np.abs(a - b) for t, a, b in zip(travel, w, w_prev)]
        w_prev = w
    two = engine(devices=devs[:2])
    two.set_train_data(StepData(x, y, batch, 1, 0, 1))
    two.reseed(1, 0)
    two.train_steps(steps)
    w2 = weights(two)
    shard_devices = sorted({str(d) for d in two.state[0][0].sharding.device_set})
    return {"devices": len(devs), "replicas": two.replicas, "state_devices": shard_devices,
            "one": [w.tolist() for w in w_prev], "two": [w.tolist() for w in w2],
            "travel": [t.tolist() for t in travel], "batch": batch, "steps": steps}


def check_processes():
    """This process's part of a multi-process run (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES,
    JAX_PROCESS_ID set by the caller): the same epoch as check_devices' sharded run, over every
    process's devices."""
    from kerascnn.engines.jax import init_distributed

    assert init_distributed()          # before anything touches a device
    import jax

    x, y = digits(512)
    batch, steps = 64, 8
    e = engine()
    e.set_train_data(StepData(x, y, batch, 1, 0, 1))
    e.reseed(1, 0)
    sums = e.train_steps(steps)
    local = sorted({str(d) for d in e.state[0][0].sharding.addressable_devices})
    return {"process": jax.process_index(), "processes": jax.process_count(), "replicas": e.replicas,
            "is_chief": e.is_chief, "local_devices": local, "sums": sums.tolist(),
            "two": [w.tolist() for w in weights(e)]}


def check_stream_train(folder, distributed):
    """One epoch of plain SGD (SMALL, augmented) on images streamed from ``folder`` (the TF
    engine's tf.data stream, every decode through ``FileImages.load``, counted), stepping one
    batch at a time; with ``distributed`` this process's part of a jax.distributed run."""
    import dataclasses
    from pathlib import Path

    if distributed == "1":
        from kerascnn.engines.jax import init_distributed

        assert init_distributed()
    import jax

    from kerascnn import data as D
    from kerascnn.data import stream

    x, y, _, _, _ = stream.scan(Path(folder), 0)
    fi = dataclasses.replace(x, size=(28, 28), channels=1, native=[False] * len(x))
    reads, load = [], fi.load
    fi.load = lambda i: reads.append(int(i)) or load(i)
    batch, seed = 16, 7
    steps = len(fi) // batch
    e = engine()
    e.set_train_data(StepData(fi, y, batch, seed, 0, 1, augment=True))
    e.reseed(seed, 0)
    w_prev = weights(e)
    travel = [np.zeros_like(w) for w in w_prev]
    sums = np.zeros(3)
    for _ in range(steps):
        sums += e.train_steps(1)
        w = weights(e)
        travel = [t + np.abs(a - b) for t, a, b in zip(travel, w, w_prev)]
        w_prev = w
    return {"process": jax.process_index(), "processes": jax.process_count(), "replicas": e.replicas,
            "reads": sorted(reads), "epoch_files": sorted(D.epoch_order(len(fi), seed, 0).numpy()[:steps * batch]
                                                          .tolist()),
            "sums": sums.tolist(), "w": [a.tolist() for a in w_prev], "travel": [t.tolist() for t in travel],
            "batch": batch, "steps": steps}


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "one-device":   # the single-device checks in one process (imports and start-up once)
        result = {"train": check_train(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])), "fused": check_fused(6),
                  "resume": check_resume(), "streaming": check_streaming()}
    elif what == "train":
        result = check_train(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif what == "fused":
        result = check_fused(int(sys.argv[2]))
    elif what == "streaming":
        result = check_streaming()
    elif what == "resume":
        result = check_resume()
    elif what == "devices":
        result = check_devices()
    elif what == "processes":
        result = check_processes()
    elif what == "stream-train":
        result = check_stream_train(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(f"unknown check {what}")
    result["tensorflow_imported"] = "tensorflow" in sys.modules
    print("RESULT " + json.dumps(result))
