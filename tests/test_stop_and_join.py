"""Issue 21, crashes and hangs: a stop request always stops (one line, exit 143), also inside a
garbage-collection callback or with the main thread stuck in C++; a JAX multi-process join
without its peers ends within a bounded time with one line naming the coordinator."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

# The first garbage collection after kerascnn installed its SIGTERM handler takes 3 s inside a
# gc callback (as JAX's collector callback or `import torch` do); SIGTERM arrives during it.
_GC_CALLBACK = """
import gc, signal, sys, time
first = []
def slow(phase, info):
    if phase == "start" and not first and signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
        first.append(1)
        print("IN_GC", flush=True)
        time.sleep(3)
gc.callbacks.append(slow)
from kerascnn.cli import main
main(sys.argv[1:])
"""

# The main thread blocks in TensorFlow's C++ iterator (never back in Python to run a handler).
_STUCK_IN_CPP = """
import time
from kerascnn import cli
cli.install_signal_handlers()
import tensorflow as tf
ds = tf.data.Dataset.range(1).map(lambda x: tf.numpy_function(lambda v: (time.sleep(120), v)[1], [x], tf.int64))
it = iter(ds)
print("BLOCKED", flush=True)
next(it)
"""


def _stop_when(code, marker, args=(), env=None, settle=0.0, timeout=60):
    """Run ``python -c code ARGS``; SIGTERM it once it printed ``marker``; (rc, stderr, seconds to end)."""
    p = subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {})))
    try:
        for line in p.stdout:
            if marker in line:
                break
        time.sleep(settle)
        t = time.time()
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=timeout)
        return p.returncode, err, time.time() - t
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()


def _errors(err):
    return [ln for ln in err.splitlines() if ln.startswith("Error:")]


@pytest.mark.slow
def test_sigterm_inside_a_gc_callback_still_stops_the_command(tmp_path):
    rc, err, seconds = _stop_when(_GC_CALLBACK, "IN_GC", ["train", "convnet", "--epochs", "100",
                                                          "--run-dir", tmp_path / "run", "-q"])
    assert rc == 143, err[-2000:]
    assert "Exception ignored" not in err and "Traceback" not in err, err[-2000:]
    assert _errors(err) == ["Error: stopped (SIGTERM)"] and seconds < 30, (seconds, err[-2000:])


@pytest.mark.slow
def test_sigterm_stops_a_process_whose_main_thread_is_stuck_in_cpp():
    rc, err, seconds = _stop_when(_STUCK_IN_CPP, "BLOCKED", env={"KERASCNN_STOP_TIMEOUT": "2"}, settle=0.5,
                                  timeout=30)
    assert rc == 143, err[-2000:]
    assert _errors(err) == ["Error: stopped (SIGTERM)"] and 1.5 < seconds < 15, (seconds, err[-2000:])


def test_a_stop_swallowed_by_a_callback_is_not_printed_and_is_raised_again(monkeypatch):
    import _thread

    from kerascnn import stopping
    from kerascnn.errors import Stopped

    printed, raised = [], []
    monkeypatch.setattr(_thread, "interrupt_main", lambda signum: raised.append(signum))
    hook = stopping._unraisable(printed.append)

    class Unraisable:
        exc_value = Stopped("SIGTERM")

    class Other:
        exc_value = ValueError("x")

    hook(Unraisable())
    hook(Other())
    deadline = time.time() + 5
    while not raised and time.time() < deadline:
        time.sleep(0.01)
    assert raised == [signal.SIGTERM] and [type(u.exc_value) for u in printed] == [ValueError]


def test_a_second_stop_request_does_not_interrupt_the_cleanup_of_the_first(monkeypatch):
    from kerascnn import stopping
    from kerascnn.errors import Stopped

    monkeypatch.setattr(stopping, "_stopping", [])
    with pytest.raises(Stopped):
        stopping._raise_stopped(signal.SIGTERM, None)
    assert stopping._raise_stopped(signal.SIGTERM, None) is None     # the watchdog keeps the deadline


# --------------------------------------------------------------------------- jax.distributed join
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("process_id", [0, 1])   # 0: the coordinator, its peer never comes; 1: no coordinator
def test_jax_join_without_peers_ends_in_one_line_naming_the_coordinator(tmp_path, process_id):
    pytest.importorskip("jax")
    address = f"127.0.0.1:{_free_port()}"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES="2",
               JAX_PROCESS_ID=str(process_id), KERASCNN_JAX_JOIN_TIMEOUT="3")
    t = time.time()
    r = subprocess.run([sys.executable, "-m", "kerascnn", "train", "lenet5", "--backend", "jax", "--epochs", "1",
                        "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, env=env, timeout=90)
    seconds = time.time() - t
    assert r.returncode == 1, r.stderr[-2000:]
    errors = _errors(r.stderr)
    assert len(errors) == 1 and "Check failure" not in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert f"process {process_id} of 2 could not join the run at the coordinator {address} within 3 s" in errors[0]
    assert "KERASCNN_JAX_JOIN_TIMEOUT" in errors[0]
    assert seconds < 60 and not (tmp_path / "run").exists()


@pytest.mark.parametrize("value, expected", [("", 120.0), ("2.5", 2.5), ("600", 600.0)])
def test_jax_join_timeout_from_the_environment(value, expected):
    from kerascnn.engines.jax_distributed import join_timeout

    assert join_timeout({"KERASCNN_JAX_JOIN_TIMEOUT": value}) == expected


@pytest.mark.parametrize("value", ["0", "-3", "soon", "1e9"])
def test_jax_join_timeout_refuses_bad_values(value):
    from kerascnn.engines.jax_distributed import join_timeout
    from kerascnn.errors import ConfigError

    with pytest.raises(ConfigError, match="KERASCNN_JAX_JOIN_TIMEOUT must be seconds"):
        join_timeout({"KERASCNN_JAX_JOIN_TIMEOUT": value})
