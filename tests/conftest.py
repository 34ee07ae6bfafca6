import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402


@pytest.fixture
def runner():
    from click.testing import CliRunner

    return CliRunner()


@pytest.fixture
def invoke(runner):
    """Invoke the kerascnn CLI in-process; returns click's Result."""
    from kerascnn.cli import cli

    def _invoke(*args, **kw):
        return runner.invoke(cli, [str(a) for a in args], **kw)

    return _invoke


import subprocess  # noqa: E402
import sys  # noqa: E402


def run_kerascnn(*args, env=None, timeout=600, cwd=None):
    """Run `python -m kerascnn ARGS` in a fresh process (own TensorFlow state)."""
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    return subprocess.run([sys.executable, "-m", "kerascnn", *map(str, args)], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=cwd)


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
    r = run_kerascnn("train", "convnet", "--epochs", "3", "--seed", "3", "--run-dir", run_dir, "-q")
    assert r.returncode == 0, r.stderr[-2000:]
    return run_dir


def kill_after_epoch(epoch, *args, env=None):
    """Start `python -m kerascnn ARGS` with the test pause hook, wait until it has finished epoch
    ``epoch`` (or 300 s), SIGKILL it and return its exit code (-SIGKILL when it was killed)."""
    return kill_at_pause(*args, env={"KERASCNN_TEST_PAUSE_AFTER_EPOCH": str(epoch), **(env or {})})


def kill_at_pause(*args, env=None):
    """Start `python -m kerascnn ARGS` with a test pause hook in ``env`` (KERASCNN_TEST_PAUSE=POINT or
    KERASCNN_TEST_PAUSE_AFTER_EPOCH=N), wait until it pauses there (or 300 s), SIGKILL it and
    return its exit code (-SIGKILL when it was killed)."""
    import signal
    import time

    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    proc = subprocess.Popen([sys.executable, "-m", "kerascnn", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=full_env)
    deadline = time.time() + 300
    for line in proc.stdout:
        if "KERASCNN_TEST_PAUSED" in line or time.time() > deadline:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return proc.returncode


def read_history(run_dir):
    """The rows of a run's history.csv as dicts."""
    import csv

    with open(os.path.join(run_dir, "history.csv")) as fh:
        return list(csv.DictReader(fh))


def load_weights(path):
    """The weights of a saved .keras model."""
    import keras

    return keras.models.load_model(path).get_weights()
