"""Training engines: who runs the steps. ``tensorflow`` (tf.distribute, the default) and ``jax``
(Keras's stateless API under ``jax.jit``). Both implement ``kerascnn.engines.base.Engine``; the
epoch loop, run directory and checkpoint format do not depend on which one runs."""
