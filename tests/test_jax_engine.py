"""The JAX engine (kerascnn/engines/jax.py) on the CPU.

Keras picks its backend once per process, so every check runs in a child process with
KERAS_BACKEND=jax (tests/jax_worker.py) and reports one JSON line; that process must never
import TensorFlow. Skipped, with the reason, where jax is not installed.
"""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                                 reason="jax is not installed (pip install -e '.[jax]' or 'jax[cpu]')")]

ROOT = Path(__file__).resolve().parents[1]
EPS32 = float(np.finfo(np.float32).eps)


def run_worker(*args, devices: int = 1) -> dict:
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.pop("XLA_FLAGS", None)
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "jax_worker.py"), *map(str, args)],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    line = next(l for l in r.stdout.splitlines() if l.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


@pytest.fixture(scope="module")
def one_device():
    """Training, K-steps-per-call and resume checks, in one process."""
    return run_worker("one-device", "lenet5:modern", 6, 1200)


def test_trains_lenet5_on_digits_without_tensorflow(one_device):
    r = one_device["train"]
    assert one_device["tensorflow_imported"] is False
    assert r["steps"] == 6 * (1200 // 64)
    assert r["test_count"] == 1797 - 1200          # every held-out digit scored once (padding masked)
    assert r["train_acc"][-1] > r["train_acc"][0]
    assert r["test_acc"] >= 0.85, r                 # chance is 0.10; 6 epochs of 18 steps reach ~0.9
    assert 0 < r["test_loss"] < 1.0


def test_k_steps_per_call_equal_k_single_calls(one_device):
    # The step count is a traced argument of one compiled While loop, so one call of 6 steps and
    # six calls of one step run the same executable on the same values: equal bit for bit.
    r = one_device["fused"]
    assert r["max_abs_diff"] == 0.0
    fused, single, unfused = np.array(r["sums"])
    assert fused[2] == single[2] == unfused[2] == 6 * 64
    assert fused[1] == single[1] == unfused[1]
    # loss sums: float32 per call, added in float64 on the host: 6 roundings vs 1 of a sum ~ 1e3
    assert abs(fused[0] - single[0]) <= 6 * EPS32 * abs(fused[0])
    # the CPU default (separately compiled single steps): other float32 rounding over 6 steps of
    # 64 examples, each loss a log of a sum over 10 classes; bounded loosely by 6*64*10 eps
    assert abs(fused[0] - unfused[0]) <= 6 * 64 * 10 * EPS32 * abs(fused[0])


def test_get_state_set_state_resume_is_bitwise(one_device):
    r = one_device["resume"]
    assert r["changed"]                       # training moved every tensor
    assert r["bitwise_weights"] and r["bitwise_state"]
    assert r["iterations"] == 3 * 10
    # the TensorFlow checkpoint's keys: 12 weights (2 conv, BN gamma/beta/mean/variance, 2 dense), o:<path>
    assert sorted(k for k in r["keys"] if k.startswith("w")) == sorted(f"w{i}" for i in range(12))
    assert "o:iteration" in r["keys"] and "o:small_conv2d_kernel_momentum" in r["keys"]


def test_streaming_equals_device_resident_data(one_device):
    """Data too big for the device: host-gathered chunks of batches (the last one padded) give
    the same weights, bit for bit, as the resident set gathered on the device."""
    r = one_device["streaming"]
    for fused in ("False", "True"):
        assert r[f"streaming-{fused}"]["max_abs_diff"] == 0.0
        assert r[f"streaming-{fused}"]["sums"][1:] == r[f"resident-{fused}"]["sums"][1:]
        assert r[f"streaming-{fused}"]["sums"][2] == 2 * 6 * 64
        ev, ref = r[f"streaming-{fused}"]["eval"], r[f"resident-{fused}"]["eval"]
        assert ev[2] == ref[2] == 64 * 6 + 10 and ev[1] == ref[1]   # every image once, padding masked
        # loss sums of 394 float32 per-example losses (~1.2 each) in another association order
        assert abs(ev[0] - ref[0]) <= 394 * EPS32 * abs(ref[0])


def test_two_host_devices_equal_one_device():
    """DataParallel path: the batch sharded over 2 CPU devices vs 1 device, one epoch of plain SGD.

    Tolerance, derived: sharding changes only the order of the float32 reductions inside a step;
    the longest is the first convolution's weight gradient over batch x 28 x 28 positions,
    N = 64 * 784 terms, whose reordering error is at most gamma_N = N * eps (Higham) relative to
    the terms' magnitude. To first order the weights then differ by at most gamma_N times the
    distance the weights travelled (sum over steps of |update|, measured on one device)."""
    r = run_worker("devices", devices=2)
    assert r["tensorflow_imported"] is False
    assert r["devices"] == 2 and r["replicas"] == 2
    assert len(r["state_devices"]) == 2               # the weights are replicated on both devices
    n = r["batch"] * 28 * 28
    travel = max(float(np.max(t)) for t in map(np.asarray, r["travel"]))
    tol = n * EPS32 * travel
    assert tol < 0.01 * travel           # the check can fail: a wrong all-reduce errs by ~travel
    diffs = [float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(r["one"], r["two"])]
    assert max(diffs) <= tol, (max(diffs), tol)
