"""Import TensorFlow without its start-up chatter.

TensorFlow's C++ runtime prints "oneDNN custom operations are on", "Could not
find cuda drivers" and an absl warning on stderr at import time, before
``TF_CPP_MIN_LOG_LEVEL`` is honoured. kerascnn silences file descriptor 2 for
the duration of the first import only (``KERASCNN_TF_LOGS=1`` keeps them);
Python exceptions raised by the import are unaffected.
"""
from __future__ import annotations

import os
import sys


def import_tensorflow():
    if "tensorflow" in sys.modules or os.environ.get("KERASCNN_TF_LOGS"):
        import tensorflow as tf

        return tf
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        import tensorflow as tf

        return tf
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf
        tf.config.list_physical_devices("GPU")  # the CUDA probe logs here
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return tf


def import_tensorflow_if_installed() -> None:
    """``import_tensorflow()`` where TensorFlow is installed (the JAX engine also runs without it)."""
    import importlib.util

    if importlib.util.find_spec("tensorflow") is not None:
        import_tensorflow()
