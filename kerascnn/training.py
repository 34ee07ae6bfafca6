"""`kerascnn train`, the entry point: ``train(options)`` runs the epoch loop (``kerascnn.train.loop``)
on an engine (``kerascnn.engines``). The parts live in ``kerascnn.train``: rundir (claim, lock),
checkpoint (state.npz), policy (device/precision/XLA), loop, options (TrainOptions, RunRecord).
"""
from __future__ import annotations

from kerascnn.train.checkpoint import weights_digest  # noqa: F401  (re-exported)
from kerascnn.train.loop import HISTORY_KEYS  # noqa: F401
from kerascnn.train.policy import cpu_has_bf16, versions, wide_mac_fraction  # noqa: F401


def train(cfg, resume: str | None = None, echo=print, verbose: int = 1, make_engine=None) -> dict:
    """Train with the resolved options (a ``TrainOptions`` or the dict ``train_config.resolve``
    returns); returns the final metrics.

    The Keras dtype policy chosen for the run is restored afterwards, so models built later in the
    same process are not silently mixed-precision; the run directory's lock is released however
    the call ends."""
    from kerascnn.train import loop
    from kerascnn.train.options import TrainOptions

    opts = cfg if isinstance(cfg, TrainOptions) else TrainOptions.from_dict(cfg)
    if make_engine is None:
        from kerascnn import distribute

        distribute.setup_devices(opts.gpus, opts.strategy)
        make_engine = loop.tensorflow_engines(distribute.choose(opts.strategy))
    import keras

    previous = keras.config.dtype_policy()
    held = []
    try:
        return loop.run(opts, resume, echo, verbose, held, make_engine)
    finally:
        keras.config.set_dtype_policy(previous)
        for lock in held:
            lock.release()
