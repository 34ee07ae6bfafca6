import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def jax_compilation_cache(tmp_path_factory):
    """One persistent JAX compilation cache for the whole test session, shared by the xdist workers
    and every process a test starts (they inherit the environment): a JAX process loads the
    executables an earlier one compiled for the same computation instead of compiling them again
    (about 5 s of CPU per `--backend jax` run). The executables are the ones XLA would compile, so
    every result is unchanged. JAX's file lock around each read and write (on whenever a maximum
    size is set) keeps two processes from reading an entry while it is written."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent          # the run's folder, shared by every worker
    os.environ.update(JAX_COMPILATION_CACHE_DIR=str(root / "jax-compilation-cache"),
                      JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                      JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1",
                      JAX_COMPILATION_CACHE_MAX_SIZE=str(2 << 30))
    yield


# CPU seconds (the test process and the processes it starts) each heavier test file took in a full
# run on an Intel Xeon (2 cores, AVX-512), 2026-12-04; files under 3 s are left out and count as 1.
# pytest-xdist (--dist loadfile --no-loadscope-reorder, setup.cfg) hands whole files to the workers
# in collection order: sorted longest first, a long file never starts last while the other worker
# idles (longest-processing-time-first scheduling). Only the order of files changes, never the order
# of the tests inside one; a stale figure costs minutes, not correctness.
FILE_CPU_SECONDS = {
    "test_jax_engine.py": 74, "test_jax_stream.py": 55, "test_records_workers.py": 47, "test_stream.py": 45,
    "test_docs_site.py": 43, "test_multiworker_faults.py": 39, "test_weights.py": 39, "test_reader_safety.py": 38,
    "test_jax_train.py": 34, "test_keras_apps.py": 31, "test_train.py": 26, "test_reliability.py": 24,
    "test_records.py": 24, "test_docs_commands.py": 24, "test_models.py": 20, "test_export.py": 19,
    "test_weights_torch.py": 15, "test_engine_contract.py": 15, "test_hostile_inputs.py": 14,
    "test_stop_and_join.py": 11, "test_rundir_safety.py": 10, "test_transforms.py": 9, "test_ownership_bombs.py": 9,
    "test_visualize.py": 8, "test_first_hour.py": 7, "test_bench.py": 7, "test_readme_quickstart.py": 7,
    "test_keras_analysis.py": 7, "test_api.py": 7, "test_data_speed.py": 6, "test_evaluate_predict.py": 5,
    "test_untrusted_savedmodel.py": 4, "test_fuse.py": 4,
}


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: -FILE_CPU_SECONDS.get(item.path.name, 1))     # stable: a file's own order kept


@pytest.fixture
def runner():
    from click.testing import CliRunner

    return CliRunner()


@pytest.fixture
def invoke(runner):
    """Invoke the kerascnn CLI in-process; returns click's Result."""
    from kerascnn.cli import cli

    def _invoke(*args, **kw):
        deterministic = _op_determinism()
        try:
            return runner.invoke(cli, [str(a) for a in args], **kw)
        finally:
            _restore_op_determinism(deterministic)

    return _invoke


import subprocess  # noqa: E402


def run_kerascnn(*args, env=None, timeout=600, cwd=None):
    """Run `python -m kerascnn ARGS` in a fresh process (own TensorFlow state)."""
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    return subprocess.run([sys.executable, "-m", "kerascnn", *map(str, args)], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=cwd)


class _Ran:
    def __init__(self, result):
        self.returncode, self.stdout, self.stderr = result.exit_code, result.stdout, result.stderr


def kerascnn_in_process(*args, env=None, cwd=None):
    """`kerascnn ARGS` in this process (click's CliRunner; no TensorFlow start-up), with the result
    attributes of run_kerascnn (returncode, stdout, stderr). For tests where a fresh process is not
    the point; an unexpected exception propagates and fails the test, as its traceback would."""
    from click.testing import CliRunner

    from kerascnn.cli import cli

    old, deterministic = os.getcwd(), _op_determinism()
    try:
        if cwd is not None:
            os.chdir(cwd)
        result = CliRunner().invoke(cli, [str(a) for a in args], env=env, prog_name="kerascnn",
                                    catch_exceptions=False)
    finally:
        os.chdir(old)
        _restore_op_determinism(deterministic)
    return _Ran(result)


def _op_determinism() -> bool:
    """TensorFlow's op determinism in this process (False while TensorFlow is not imported)."""
    if "tensorflow" not in sys.modules:
        return False
    from tensorflow.python.framework import config

    return config.is_op_determinism_enabled()


def _restore_op_determinism(before: bool) -> None:
    """After an in-process `kerascnn train --deterministic`: op determinism off again unless it was
    on before, so that it does not carry into the worker's later tests."""
    if _op_determinism() and not before:
        from tensorflow.python.framework import config

        config.disable_op_determinism()


# Run the CLI in a fresh process in which TensorFlow cannot be found (as on a JAX-only GPU machine):
# the path finder returns no spec for it, so `import tensorflow` raises ModuleNotFoundError and
# importlib.util.find_spec("tensorflow") is None, exactly as when it is not installed.
_HIDE_TF = """
import importlib.machinery as m, sys
class _NoTF(m.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        return None if name.split(".")[0] == "tensorflow" else m.PathFinder.find_spec(name, path, target)
sys.meta_path[:] = [_NoTF if f is m.PathFinder else f for f in sys.meta_path]
from kerascnn.cli import main
main()
"""


def run_without_tensorflow(*args, timeout=120):
    """`kerascnn ARGS` in a fresh process where TensorFlow cannot be imported (KERAS_BACKEND unset)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("KERAS_BACKEND", None)
    return subprocess.run([sys.executable, "-c", _HIDE_TF, *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A convnet trained for 3 epochs on the bundled digits (shared by evaluate/predict/export/visualize tests)."""
    run_dir = tmp_path_factory.mktemp("runs") / "convnet-digits"
    r = kerascnn_in_process("train", "convnet", "--epochs", "3", "--seed", "3", "--run-dir", run_dir, "-q")
    assert r.returncode == 0, r.stderr[-2000:]
    return run_dir


def start_kerascnn(*args, env=None, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
    """Start `python -m kerascnn ARGS` in a fresh process (tests stop or kill it from outside)."""
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    return subprocess.Popen([sys.executable, "-m", "kerascnn", *map(str, args)], stdout=stdout, stderr=stderr,
                            text=True, env=full_env)


def wait_until(proc, ready, timeout=300) -> bool:
    """Poll ``ready()`` every 10 ms while ``proc`` runs: True as soon as it holds; False when the
    process ended first or ``timeout`` seconds passed."""
    import time

    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        if ready():
            return True
        time.sleep(0.01)
    return False


def epochs_done(run_dir) -> int:
    """Epochs a run directory's history.csv lists (it is written after the epoch's models and
    training state, atomically)."""
    path = os.path.join(run_dir, "history.csv")
    return len(read_history(run_dir)) if os.path.isfile(path) else 0


def staged_export(target):
    """The hidden staging folder of an export to ``target`` once it holds kerascnn.json (the
    SavedModel is written and about to be verified, then renamed), else None."""
    from pathlib import Path

    target = Path(target)
    if not target.parent.is_dir():
        return None
    staged = [p for p in target.parent.iterdir() if p.name.startswith(f".{target.name}.partial-")]
    return next((p for p in staged if (p / "kerascnn.json").is_file()), None)


def kill_after_epoch(epoch, *args, env=None):
    """Start `python -m kerascnn train ... --run-dir RUN`, SIGKILL it from outside as soon as RUN's
    history.csv lists ``epoch`` epochs (or after 300 s), and return its exit code (-SIGKILL when
    it was killed)."""
    args = [str(a) for a in args]
    run_dir = args[args.index("--run-dir") + 1]
    return kill_when(lambda: epochs_done(run_dir) >= epoch, *args, env=env)


def kill_when(ready, *args, env=None):
    """Start `python -m kerascnn ARGS`, SIGKILL it as soon as ``ready()`` holds (or after 300 s),
    and return its exit code (-SIGKILL when it was killed)."""
    import signal

    proc = start_kerascnn(*args, env=env)
    wait_until(proc, ready)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return proc.returncode


def state_meta(run_dir) -> dict:
    """The ``meta`` record of RUN/backup/state.npz ({} while there is none, or it is being replaced)."""
    import json

    import numpy as np

    try:
        with np.load(os.path.join(run_dir, "backup", "state.npz")) as z:
            return json.loads(bytes(z["meta"]).decode())
    except Exception:
        return {}


def kill_inside_epoch(*args, env=None, epochs_done=1):
    """Start `python -m kerascnn train ... --run-dir RUN --save-every N`, and SIGKILL it from outside
    once RUN's training state was saved inside an epoch after ``epochs_done`` completed epochs:
    stopped (SIGSTOP) when the state file says so, checked again while it cannot write, then
    killed (or let go on when an epoch-end save came in between). Returns the state's meta at the
    kill ({} when the run ended first or after 300 s)."""
    import signal
    import time

    args = [str(a) for a in args]
    run_dir = args[args.index("--run-dir") + 1]

    def inside():
        m = state_meta(run_dir)
        return m if m.get("step", 0) > 0 and m["epoch"] + 1 >= epochs_done else None

    proc = start_kerascnn(*args, env=env)
    deadline = time.time() + 300
    try:
        while wait_until(proc, lambda: inside() is not None, timeout=max(0.0, deadline - time.time())):
            proc.send_signal(signal.SIGSTOP)
            meta = inside()
            if meta is not None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
                return meta
            proc.send_signal(signal.SIGCONT)
        return {}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)


def read_history(run_dir):
    """The rows of a run's history.csv as dicts."""
    import csv

    with open(os.path.join(run_dir, "history.csv")) as fh:
        return list(csv.DictReader(fh))


def load_weights(path):
    """The weights of a saved .keras model."""
    import keras

    return keras.models.load_model(path).get_weights()
