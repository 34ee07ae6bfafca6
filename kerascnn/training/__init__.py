"""Training, read top to bottom: config -> setup -> loop -> record (pure Python at import time).

* ``config``     ``TrainConfig``: every option declared once (default, kind, help)
* ``merge``      ``resolve_config``: the one merge of defaults, family defaults, ``--config`` or
                 the resumed record, and what the user typed
* ``record``     ``RunRecord``: the run's config plus what it resolved; the only reader and
                 writer of ``RUN/config.json``
* ``setup``      everything before the first epoch: engine, seed, data, batch, precision, model,
                 run directory, record, start-up line (``Session``)
* ``loop``       the epoch loop: steps, NaN stop, validation, checkpoints, history, TensorBoard
* ``finish``     metrics.json, curves.png
* ``rundir``     the run directory's lifecycle: exclusive claim, lock, ownership-proven sweep
* ``resume``     the rules of ``--resume``: which options may change, the refusals
* ``checkpoint`` the training state ``backup/state.npz``: atomic write, exact resume, validation
* ``savepoints`` ``--save-every``: when the state is also saved inside an epoch (steps or time)
* ``finetune``   the two phases of ``--freeze-epochs``

The steps themselves run in an engine (``kerascnn.engines``); the data comes as a
``kerascnn.data.source.DataSource``. ``kerascnn.train(...)`` (``kerascnn.api``) and ``kerascnn
train`` (``kerascnn.commands.train``) are thin layers over ``run``.
"""
from __future__ import annotations


def run(config, resume=None, echo=print, verbose: int = 1, make_engine=None):
    """Train with a resolved ``TrainConfig`` (``merge.resolve_config``); returns the
    ``finish.Outcome`` (metrics, record, history).

    Keras runs on ``config.backend`` (set before Keras is imported). The Keras dtype policy chosen
    for the run is restored afterwards, so models built later in the same process are not
    silently mixed-precision; the run directory's lock is released and the engine lets go of the
    training stream however the call ends."""
    from kerascnn import engines

    engines.use_backend(config.backend)
    from kerascnn.tfquiet import import_tensorflow_if_installed

    import_tensorflow_if_installed()   # quietly, where installed, before Keras (which seeds it too)
    import keras

    from kerascnn.training import finish, loop, setup

    previous = keras.config.dtype_policy()
    held, session = [], None
    try:
        session = setup.start(config, resume, echo, held, make_engine)
        epochs = loop.EpochLoop(session, verbose)
        epochs.run()
        return finish.finish(session, epochs)
    finally:
        if session is not None:
            session.engine.release_data()     # the stream's reader threads end now, not at a later GC
        keras.config.set_dtype_policy(previous)
        for lock in held:
            lock.release()
