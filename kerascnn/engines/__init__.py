"""Training engines: who runs the steps. ``tensorflow`` (tf.distribute, the default) and ``jax``
(Keras's stateless API under ``jax.jit``; its parts in ``jax_steps`` and ``jax_feed``). Both
implement ``kerascnn.engines.base.Engine``; the epoch loop, run directory and checkpoint format
do not depend on which one runs. This module is the one place that picks an engine by name."""
from __future__ import annotations

import importlib.util
import os
import sys

from kerascnn.errors import ConfigError

ENGINES = {"tensorflow": "kerascnn.engines.tensorflow", "jax": "kerascnn.engines.jax"}


def use_backend(backend: str) -> None:
    """Run Keras on ``backend``: Keras reads KERAS_BACKEND once, when it is first imported, so
    it is set here before that; a process whose Keras already runs another backend is refused
    in one line (the command line never imports Keras before this)."""
    if importlib.util.find_spec(backend) is None:
        raise ConfigError(f"--backend {backend} needs the {backend} package (pip install {backend})")
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != backend:
            raise ConfigError(f"--backend {backend}: this Python process already runs Keras on "
                              f"{keras.backend.backend()} (Keras picks its backend once, at import); start a new "
                              f"process with KERAS_BACKEND={backend}")
    os.environ["KERAS_BACKEND"] = backend


def prepare(config, echo):
    """Start the engine ``config.backend`` names (devices and strategy first, before anything
    else touches them) and return ``make(num_classes) -> Engine``."""
    import importlib

    return importlib.import_module(ENGINES[config.backend]).prepare(config, echo)


def on_cpu(backend: str) -> bool:
    """Whether the engine ``backend`` names trains on the CPU (no GPU or other accelerator), i.e.
    in the memory the data is loaded into. Called after ``prepare``."""
    if backend == "jax":
        import jax

        return jax.devices()[0].platform == "cpu"
    import tensorflow as tf

    return not tf.config.list_physical_devices("GPU")
