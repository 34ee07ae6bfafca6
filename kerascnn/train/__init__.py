"""The training loop in parts a reader can find (pure Python at import time):

* ``rundir``     the run directory's lifecycle: exclusive claim, lock, ownership-proven sweep, resume checks
* ``resume``     the rules of ``--resume``: which options may change, the refusals, the engine it keeps
* ``checkpoint`` the training state ``backup/state.npz``: atomic write, exact resume, validation
* ``policy``     device / precision / XLA choices and the start-up line
* ``loop``       the epoch loop: history, TensorBoard, best/last models, NaN stop, stop hint
* ``options``    typed records: ``TrainOptions`` (what the user asked) and ``RunRecord`` (config.json)

The steps themselves run in an engine (``kerascnn.engines``).
"""
