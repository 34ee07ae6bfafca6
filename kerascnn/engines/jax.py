"""The JAX engine: Keras 3 on the JAX backend, K training steps per ``jax.jit`` call.

Runs in a process started with ``KERAS_BACKEND=jax`` and never imports TensorFlow for data in
memory (the GPU machine has JAX and Keras but no TensorFlow); streaming from disk reads through
``tf.data``, with TensorFlow's GPUs hidden from it (``_input_tensorflow``). Its parts:

* this module: ``JaxEngine`` (the ``kerascnn.engines.base.Engine`` contract: devices, state,
  the epoch bookkeeping of the training stream), the epoch order, joining a multi-process run;
* ``jax_steps``: the compiled functions (one step, K steps in one ``lax.fori_loop``, inference);
* ``jax_feed``: what feeds them (arrays resident on the device or gathered by the host, images
  streamed from disk, evaluation).

* Epoch order. In memory, epoch ``e`` is ``np.random.default_rng([seed, e]).permutation(n)`` (a
  function of (seed, epoch) only, no TensorFlow), cut into ``n // batch`` full batches. This is
  NOT the TensorFlow engine's order (``data.epoch_order`` uses TF's stateless shuffle; a streamed
  run uses that one): each engine resumes exactly on itself; a run does not switch engines.
* Precision: bf16 mixed precision through the Keras dtype policy set before ``build`` (the last
  layer computes in float32; ``engines.policy.jax_precision_for``).
* Dropout draws from the SeedGenerator state variables, set by ``reseed`` from (seed, epoch).
* Devices. All local devices by default: parameters replicated, the batch axis sharded
  (``NamedSharding`` over a 1-D mesh ``batch``); XLA inserts the gradient all-reduce. BatchNorm
  statistics are therefore over the global batch, exactly as on one device.
* Several hosts (``jax.distributed``, the JAX counterpart of ``TF_CONFIG``): ``init_distributed``
  reads ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` (or, with
  ``KERASCNN_JAX_DISTRIBUTED=1``, lets JAX detect a Slurm/Open MPI/Kubernetes cluster) and calls
  ``jax.distributed.initialize`` before any device is touched (on CPUs with gloo collectives).
  The mesh then spans every process's devices: each process holds the same prepared data and
  the same epoch order, and computes the rows of the global batch that fall on its own devices
  (the global batch is split by process, then by device); XLA all-reduces the gradients across
  processes. Only process 0 is the chief (``is_chief``): it alone writes the run directory.
"""
from __future__ import annotations

import os

import numpy as np

from kerascnn.engines.base import (Engine, StepData, assign_state, is_seed_state, opt_key, seed_states, seed_value,
                                   start_totals)
from kerascnn.engines.jax_distributed import (  # noqa: F401  (their home since issue 21)
    _DISTRIBUTED, distributed_settings, init_distributed)


def set_random_seed(seed: int) -> None:
    """``keras.utils.set_random_seed`` without its TensorFlow import (it seeds TF when TF is
    installed): Python's, NumPy's and Keras's global seed (initial weights, SeedGenerators)."""
    import random

    from keras.src.backend.common import global_state

    random.seed(seed)
    np.random.seed(seed)
    global_state.set_global_attribute("global_random_seed", int(seed))


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The JAX engine's sample order of one epoch (int32), a function of (seed, epoch) only."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n).astype(np.int32)


def prepare(config, echo):
    """The JAX engine's start for ``config``: joins a multi-process run first when the environment
    describes one (``init_distributed``). Returns ``make(num_classes) -> JaxEngine``."""
    if init_distributed():
        import jax

        echo(f"jax.distributed: process {jax.process_index()} of {jax.process_count()}, "
             f"{len(jax.local_devices())} local of {len(jax.devices())} devices")

    def make(num_classes: int) -> JaxEngine:
        return JaxEngine(num_classes, float(config.label_smoothing))

    return make


class JaxEngine(Engine):
    name = kind = "jax"
    jit = True

    def __init__(self, num_classes: int, label_smoothing: float = 0.0, devices=None, fused=None):
        import jax
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

        import keras

        if keras.backend.backend() != "jax":
            raise RuntimeError("the JAX engine needs KERAS_BACKEND=jax set before keras is imported")
        # every device of every process (one process: the local ones)
        self.devices = list(devices) if devices is not None else jax.devices()
        self.replicas = len(self.devices)
        self.is_chief = jax.process_index() == 0
        self.processes, self.process = jax.process_count(), jax.process_index()
        self.task = f"process:{self.process}"
        self.num_classes = int(num_classes)
        self.label_smoothing = float(label_smoothing)
        self.mesh = Mesh(np.array(self.devices), ("batch",))
        self.replicated = NamedSharding(self.mesh, P())
        self.sharded = NamedSharding(self.mesh, P("batch"))
        # K steps per call inside one compiled loop: on accelerators. XLA:CPU compiles a loop body
        # ~5x slower than the same step on its own (convnet, 2 cores: a 1-step lax.scan 60 vs
        # 289 images/s for the plain jitted step), so on CPUs the engine dispatches K jitted
        # single steps asynchronously and waits once. KERASCNN_JAX_FUSED=0/1 overrides.
        env = os.environ.get("KERASCNN_JAX_FUSED")
        self.fused = bool(fused) if fused is not None else (env not in ("0", "") if env is not None
                                                            else self.devices[0].platform != "cpu")
        self.model = self.optimizer = None
        self._data = self._feed = self._steps = self._evaluator = None

    # ------------------------------------------------------------------ describing, deciding
    def readers(self) -> tuple:
        return self.processes, "processes"

    def precision(self, requested, report) -> str:
        from kerascnn.engines.policy import jax_precision_for

        return jax_precision_for(self.devices, requested, report)

    def check(self, config) -> None:
        from kerascnn.errors import ConfigError

        if config.freeze_epochs:
            raise ConfigError(f"--freeze-epochs needs the tensorflow engine (this run uses {self.name})")

    def check_source(self, source) -> None:
        """Refuse streaming from disk in one line where TensorFlow (its ``tf.data``) is missing."""
        from kerascnn.errors import ConfigError

        if source.in_memory:
            return
        try:
            _input_tensorflow()
        except ImportError:
            raise ConfigError("streaming from disk (--stream) on the jax engine reads the files through "
                              "TensorFlow's tf.data, which is not installed here; install tensorflow, or use "
                              "--stream off (the data must then fit in memory)") from None

    # ------------------------------------------------------------------ building
    def build(self, build_model, build_optimizer) -> None:
        from kerascnn.engines.jax_feed import Evaluator
        from kerascnn.engines.jax_steps import JaxSteps

        self.model = build_model()
        self.optimizer = build_optimizer()
        self.optimizer.build(self.model.trainable_variables)
        self._pull_state()
        self._steps = JaxSteps(self.model, self.optimizer, self.num_classes, self.label_smoothing, self.sharded)
        self._evaluator = Evaluator(self._steps, self.replicated)

    def _pull_state(self) -> None:
        """Device state := copies of the Keras variables' values, replicated on every device (the
        train function donates its state buffers, so the variables must not share them)."""
        import jax
        import jax.numpy as jnp

        m, o = self.model, self.optimizer
        state = ([v.value for v in m.trainable_variables], [v.value for v in m.non_trainable_variables],
                 [v.value for v in o.variables])
        self.state = jax.tree.map(jnp.copy, jax.device_put(state, self.replicated))

    def sync_to_model(self) -> None:
        """The Keras variables := copies of the device state (the next train call donates the state)."""
        import jax.numpy as jnp

        tv, ntv, ov = self.state
        for var, val in zip(self.model.trainable_variables, tv):
            var.assign(jnp.copy(val))
        for var, val in zip(self.model.non_trainable_variables, ntv):
            var.assign(jnp.copy(val))
        for var, val in zip(self.optimizer.variables, ov):
            var.assign(jnp.copy(val))

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict:
        self.sync_to_model()
        out = {f"w{i}": np.asarray(w) for i, w in enumerate(self.model.get_weights())}
        out.update({f"g{i}": np.asarray(v.value) for i, v in enumerate(seed_states(self.model))})
        out.update({opt_key(v): np.asarray(v.value) for v in self.optimizer.variables})
        return out

    def set_state(self, state: dict) -> None:
        assign_state(self.model, self.optimizer, state)
        if not any(k.startswith("g") for k in state):
            # an older state without the seed-generator states: keep the device's (reseed sets
            # them at the start of every epoch)
            tv, ntv, ov = self.state
            seeds = {id(v): val for v, val in zip(self.model.non_trainable_variables, ntv) if is_seed_state(v)}
            for v in self.model.non_trainable_variables:
                if id(v) in seeds:
                    v.assign(seeds[id(v)])
        self._pull_state()

    def learning_rate(self) -> float:
        import jax.numpy as jnp
        import keras

        it = self.optimizer.iterations
        it.assign(jnp.copy(self._opt_value(it)))
        lr = self.optimizer.learning_rate
        return float(keras.ops.convert_to_numpy(lr))

    def _opt_value(self, var):
        for v, val in zip(self.optimizer.variables, self.state[2]):
            if v is var:
                return val
        raise KeyError(var.path)

    def reseed(self, seed: int, epoch: int) -> None:
        import jax

        tv, ntv, ov = self.state
        new = []
        for v, val in zip(self.model.non_trainable_variables, ntv):
            if is_seed_state(v):
                val = jax.device_put(np.array(seed_value(seed, epoch), dtype=v.dtype), self.replicated)
            new.append(val)
        self.state = (tv, new, ov)

    # ------------------------------------------------------------------ the training stream
    def set_train_data(self, data: StepData) -> None:
        from kerascnn.engines.jax_feed import ArrayFeed, FileFeed

        if data.batch % self.replicas:
            raise ValueError(f"batch size {data.batch} must be divisible by the {self.replicas} devices")
        if data.steps_per_epoch < 1:
            raise ValueError(f"batch size {data.batch} is larger than the {len(data.x)} training images")
        self._data = data
        self._steps.batch, self._steps.augment = int(data.batch), bool(data.augment)
        self._epoch, self._step_in_epoch = int(data.first_epoch), int(data.first_step)
        if data.source.in_memory:
            self._feed = ArrayFeed(data, self._steps, self.replicated, self.fused, epoch_order)
        else:   # decoded from disk by the source's tf.data stream
            _input_tensorflow()
            self._feed = FileFeed(data, self._steps, self.sharded, self.process, self.processes)

    def release_data(self) -> None:
        self._data = self._feed = None

    def train_steps(self, n: int, totals=None) -> np.ndarray:
        """The next ``n`` steps of the stream (a call may cross an epoch boundary), their sums
        added to ``totals`` one step at a time (float32, on the device)."""
        d = self._data
        if d is None:
            raise RuntimeError("set_train_data first")
        totals = start_totals(totals)
        while n > 0:
            if self._epoch >= d.epochs:
                raise RuntimeError("the training stream is exhausted")
            k = min(n, d.steps_per_epoch - self._step_in_epoch)
            self.state, totals = self._feed.run(self.state, totals, self._epoch, self._step_in_epoch, k)
            n -= k
            self._step_in_epoch += k
            if self._step_in_epoch == d.steps_per_epoch:
                self._epoch, self._step_in_epoch = self._epoch + 1, 0
        return totals

    def evaluate(self, x, y, batch: int) -> np.ndarray:
        """Inference-mode sums (``jax_feed.Evaluator``); the batch rounded up to the devices."""
        from kerascnn.data.source import as_source

        if len(x) == 0:
            return np.zeros(3)
        source = as_source(x, y)
        if not source.in_memory:
            _input_tensorflow()
        return self._evaluator.sums(self.state, source, int(batch) + (-int(batch)) % self.replicas)


def _input_tensorflow():
    """TensorFlow for the input pipeline only (``tf.data`` on the CPU): its GPUs hidden from it, so
    it neither allocates accelerator memory beside JAX nor places input ops there."""
    from kerascnn.tfquiet import import_tensorflow

    tf = import_tensorflow()

    try:
        tf.config.set_visible_devices([], "GPU")
    except (RuntimeError, ValueError):   # devices already initialised (a second call): nothing to do
        pass
    return tf
