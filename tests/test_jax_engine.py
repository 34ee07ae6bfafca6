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


def worker_env(devices: int = 1, **extra) -> dict:
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), **extra)
    for var in ("XLA_FLAGS", "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID",
                "KERASCNN_JAX_DISTRIBUTED"):
        if var not in extra:
            env.pop(var, None)
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def worker_result(stdout: str) -> dict:
    line = next(l for l in stdout.splitlines() if l.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def run_worker(*args, devices: int = 1) -> dict:
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "jax_worker.py"), *map(str, args)],
                       capture_output=True, text=True, env=worker_env(devices), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return worker_result(r.stdout)


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


@pytest.fixture(scope="module")
def host_devices():
    return run_worker("devices", devices=2)


def _tolerance(r):
    """n * eps * travel: see test_two_host_devices_equal_one_device."""
    n = r["batch"] * 28 * 28
    travel = max(float(np.max(t)) for t in map(np.asarray, r["travel"]))
    return n * EPS32 * travel, travel


def test_two_host_devices_equal_one_device(host_devices):
    """DataParallel path: the batch sharded over 2 CPU devices vs 1 device, one epoch of plain SGD.

    Tolerance, derived: sharding changes only the order of the float32 reductions inside a step;
    the longest is the first convolution's weight gradient over batch x 28 x 28 positions,
    N = 64 * 784 terms, whose reordering error is at most gamma_N = N * eps (Higham) relative to
    the terms' magnitude. To first order the weights then differ by at most gamma_N times the
    distance the weights travelled (sum over steps of |update|, measured on one device)."""
    r = host_devices
    assert r["tensorflow_imported"] is False
    assert r["devices"] == 2 and r["replicas"] == 2
    assert len(r["state_devices"]) == 2               # the weights are replicated on both devices
    n = r["batch"] * 28 * 28
    travel = max(float(np.max(t)) for t in map(np.asarray, r["travel"]))
    tol = n * EPS32 * travel
    assert tol < 0.01 * travel           # the check can fail: a wrong all-reduce errs by ~travel
    diffs = [float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(r["one"], r["two"])]
    assert max(diffs) <= tol, (max(diffs), tol)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_processes(argv, folders, timeout: int, **extra_env) -> list:
    """Start ``argv`` once per folder as the processes of one jax.distributed job (process i has
    ``folders[i]`` as its working directory; its stdout/stderr go to ``out.txt``/``err.txt`` there,
    files not pipes: a process blocked on a full pipe would stall the other's shutdown); wait, kill
    any left. Returns (returncode, stdout, stderr) per process."""
    port, procs = _free_port(), []
    for i, folder in enumerate(folders):
        folder.mkdir(parents=True, exist_ok=True)
        env = worker_env(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES=str(len(folders)),
                         JAX_PROCESS_ID=str(i), **extra_env)
        with open(folder / "out.txt", "w") as fo, open(folder / "err.txt", "w") as fe:
            procs.append(subprocess.Popen(argv, stdout=fo, stderr=fe, env=env, cwd=folder))
    try:
        for p in procs:
            p.wait(timeout=timeout)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return [(p.returncode, (f / "out.txt").read_text(), (f / "err.txt").read_text()) for p, f in zip(procs, folders)]


def test_two_processes_equal_one_process(host_devices, tmp_path):
    """jax.distributed over two local CPU processes (gloo collectives), one device each, set up
    from JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID: the same epoch of plain
    SGD as the one-process run of test_two_host_devices_equal_one_device, within the same
    derived bound (the cross-process all-reduce only reorders the float32 gradient sums); both
    processes hold the same weights; process 0 alone is the chief."""
    done = run_processes([sys.executable, str(ROOT / "tests" / "jax_worker.py"), "processes"],
                         [tmp_path / f"p{i}" for i in range(2)], timeout=300)
    for rc, _, err in done:
        assert rc == 0, err[-3000:]
    r0, r1 = sorted((worker_result(out) for _, out, _ in done), key=lambda r: r["process"])
    assert (r0["process"], r1["process"], r0["processes"]) == (0, 1, 2)
    assert r0["replicas"] == r1["replicas"] == 2 and len(r0["local_devices"]) == len(r1["local_devices"]) == 1
    assert r0["local_devices"] != r1["local_devices"]      # each process computes its half of the batch
    assert r0["is_chief"] is True and r1["is_chief"] is False
    assert r0["tensorflow_imported"] is False
    assert r0["sums"] == r1["sums"] and r0["sums"][2] == 8 * 64   # global sums: every example counted once
    for a, b in zip(r0["two"], r1["two"]):                   # replicated: the same weights in both processes
        assert np.array_equal(np.asarray(a), np.asarray(b))
    tol, travel = _tolerance(host_devices)
    assert tol < 0.01 * travel
    diffs = [float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(host_devices["one"], r0["two"])]
    assert max(diffs) <= tol, (max(diffs), tol)


@pytest.mark.parametrize("env,expected", [
    ({}, None),
    ({"JAX_NUM_PROCESSES": "1"}, None),
    ({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"},
     {"coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 3}),
    ({"JAX_COORDINATOR_ADDRESS": "head:1234"}, {"coordinator_address": "head:1234"}),   # the rest detected by JAX
    ({"KERASCNN_JAX_DISTRIBUTED": "1"}, {}),                                              # cluster auto-detection
    ({"KERASCNN_JAX_DISTRIBUTED": "0"}, None),
])
def test_distributed_settings_from_the_environment(env, expected):
    from kerascnn.engines.jax import distributed_settings

    assert distributed_settings(env) == expected


@pytest.mark.parametrize("env,needle", [
    ({"JAX_COORDINATOR_ADDRESS": "head"}, "host:port"),
    ({"JAX_NUM_PROCESSES": "two"}, "JAX_NUM_PROCESSES must be an integer"),
    ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"}, "JAX_PROCESS_ID must be in 0..1"),
    ({"JAX_NUM_PROCESSES": "0"}, "at least 1"),
])
def test_distributed_settings_refuse_bad_values(env, needle):
    from kerascnn.engines.jax import distributed_settings
    from kerascnn.errors import ConfigError

    with pytest.raises(ConfigError, match=needle):
        distributed_settings(env)


def test_init_distributed_calls_jax_once_with_gloo_first(monkeypatch):
    from kerascnn.engines import jax as J
    from kerascnn.engines import jax_distributed

    monkeypatch.setattr(jax_distributed, "_DISTRIBUTED", [])
    calls = []
    env = {"JAX_COORDINATOR_ADDRESS": "127.0.0.1:9", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"}
    fake = {"initialize": lambda **kw: calls.append(("init", kw)), "configure": lambda k, v: calls.append((k, v))}
    assert J.init_distributed({}, **fake) is False and calls == []
    assert J.init_distributed(env, **fake) is True
    assert J.init_distributed(env, **fake) is True          # once per process
    assert calls == [("jax_cpu_collectives_implementation", "gloo"),
                     ("init", {"coordinator_address": "127.0.0.1:9", "num_processes": 2, "process_id": 1,
                               "initialization_timeout": 150})]


def test_two_process_train_only_process_0_writes_the_run_directory(tmp_path):
    """`kerascnn train --backend jax` in two processes joined by JAX_COORDINATOR_ADDRESS etc.: one
    run directory, written by process 0; process 1 trains the same weights and writes nothing there."""
    run_dir = tmp_path / "run"
    done = run_processes([sys.executable, "-m", "kerascnn", "train", "lenet5", "--backend", "jax", "--epochs", "1",
                          "--run-dir", str(run_dir)], [tmp_path / f"p{i}" for i in range(2)], timeout=400)
    for rc, _, err in done:
        assert rc == 0, err[-3000:]
    texts = [out for _, out, _ in done]
    assert "jax.distributed: process 1 of 2" in texts[1] and "results written by the chief" in texts[1]
    assert f"run directory {run_dir}" in texts[0]
    sha = [next(l for l in t.splitlines() if l.startswith("weights sha256")) for t in texts]
    assert sha[0] == sha[1]                                    # the same replicated weights
    assert {"config.json", "history.csv", "best.keras", "last.keras"} <= {f.name for f in run_dir.iterdir()}
    assert len((run_dir / "history.csv").read_text().splitlines()) == 2
    assert sorted(f.name for f in (tmp_path / "p1").iterdir()) == ["err.txt", "out.txt"]   # nothing else written
