"""The TensorFlow engine: ``strategy.run(step)`` under tf.distribute, several steps per ``tf.function`` call.

Why a custom loop: ``model.fit`` fails under MultiWorkerMirroredStrategy with Keras 3
(keras-team/keras#20585: "Attempt to convert a value (PerReplica...)"). So every strategy --
default, one device, mirrored, multi-worker -- runs the same ``strategy.run(step)`` over
``strategy.experimental_distribute_dataset``, K steps per ``tf.function`` call (like
``steps_per_execution``), with a Keras 3 model, optimizer and loss created in the strategy's scope.
The batch order of epoch e is ``data.epoch_order(n, seed, e)`` (see ``data.train_dataset``).
"""
from __future__ import annotations

import numpy as np

from kerascnn.engines.base import (Engine, StepData, WorkerLost, assign_state, is_seed_state, opt_key, seed_states,
                                   seed_value, start_totals)


def prepare(config, echo):
    """The TensorFlow engine's start for ``config``: devices restricted and the strategy chosen
    before anything else touches TensorFlow (multi-worker collectives must be configured at
    program start), op determinism when asked. Returns ``make(num_classes) -> TensorFlowEngine``."""
    import tensorflow as tf

    from kerascnn import distribute
    from kerascnn.engines import policy

    distribute.setup_devices(config.gpus, config.strategy)
    info = distribute.choose(config.strategy)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()

    def make(num_classes: int) -> TensorFlowEngine:
        return TensorFlowEngine(info, num_classes, float(config.label_smoothing), policy.jit_for(info, config.jit, echo))

    return make


class TensorFlowEngine(Engine):
    name = "tensorflow"

    def __init__(self, info, num_classes: int, label_smoothing: float = 0.0, jit: bool = False):
        """``info``: a ``kerascnn.distribute.StrategyInfo`` (strategy, replicas, devices, chief)."""
        self.info = info
        self.strategy = info.strategy
        self.kind = info.kind
        self.replicas = info.replicas
        self.devices = list(info.devices)
        self.is_chief = info.is_chief
        self.task = info.task
        self.lockstep = info.kind == "multiworker"   # every worker runs the same calls
        self.num_classes = int(num_classes)
        self.label_smoothing = float(label_smoothing)
        self.jit = bool(jit)
        self.model = self.optimizer = None
        self._iterator = None
        self._batch = None
        self._eval_cache = None

    # ------------------------------------------------------------------ describing, deciding
    def describe(self) -> str:
        from kerascnn.engines.policy import describe_strategy

        return describe_strategy(self.info)

    def readers(self) -> tuple:
        from kerascnn.data import stream

        return stream.workers(self.strategy), "workers"

    def precision(self, requested, report) -> str:
        from kerascnn.engines.policy import precision_for

        return precision_for(self.info, requested, report)

    # ------------------------------------------------------------------ building
    def build(self, build_model, build_optimizer) -> None:
        with self.strategy.scope():
            self.model = build_model()
            self.optimizer = build_optimizer()
            self.optimizer.build(self.model.trainable_variables)
        self._make_functions()

    def _make_functions(self) -> None:
        import keras
        import tensorflow as tf

        model, optimizer, strategy, k = self.model, self.optimizer, self.strategy, self.num_classes
        smoothing = self.label_smoothing

        def per_example_loss(y, p):
            if smoothing:
                return keras.losses.categorical_crossentropy(tf.one_hot(y, k), p, label_smoothing=smoothing)
            return keras.losses.sparse_categorical_crossentropy(y, p)

        def sums(per, p, y):
            correct = tf.cast(tf.equal(tf.argmax(p, -1, output_type=y.dtype), y), tf.float32)
            return tf.stack([tf.reduce_sum(tf.cast(per, tf.float32)), tf.reduce_sum(correct),
                             tf.cast(tf.shape(y)[0], tf.float32)])

        def train_step(x, y):
            with tf.GradientTape() as tape:
                p = model(x, training=True)
                per = per_example_loss(y, p)
                loss = tf.nn.compute_average_loss(per, global_batch_size=self._batch)
                scaled = optimizer.scale_loss(loss)
            grads = tape.gradient(scaled, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return sums(per, p, y)

        def eval_step(x, y):
            p = model(x, training=False)
            return sums(per_example_loss(y, p), p, y)

        step_fn = tf.function(train_step, jit_compile=self.jit)
        eval_fn = tf.function(eval_step, jit_compile=self.jit)

        @tf.function
        def train_calls(iterator, n, totals):
            for _ in tf.range(n):
                x, y = next(iterator)
                totals += strategy.reduce("SUM", strategy.run(step_fn, args=(x, y)), axis=None)
            return totals

        @tf.function
        def eval_call(x, y):
            return strategy.reduce("SUM", strategy.run(eval_fn, args=(x, y)), axis=None)

        self._train_calls, self._eval_call = train_calls, eval_call

    # ------------------------------------------------------------------ data and steps
    def set_train_data(self, data: StepData) -> None:
        self._batch = int(data.batch)
        # one stream for all remaining epochs (each consumes exactly steps_per_epoch batches; the
        # first from its first_step); each worker reads its share of a stream from disk
        self._iterator = iter(data.source.distribute_train(self.strategy, data.batch, data.seed, data.first_epoch,
                                                           data.epochs, bool(data.augment),
                                                           first_step=data.first_step))

    def release_data(self) -> None:
        self._iterator = None

    def train_steps(self, n: int, totals=None) -> np.ndarray:
        import tensorflow as tf

        if self._iterator is None:
            raise RuntimeError("set_train_data first")
        with self._lost_worker():
            return self._train_calls(self._iterator, tf.constant(int(n)), tf.constant(start_totals(totals))).numpy()

    def evaluate(self, x, y, batch: int) -> np.ndarray:
        from kerascnn.data.source import as_source

        if len(x) == 0:
            return np.zeros(3)
        key = (id(x), id(y), len(x), int(batch))
        if self._eval_cache is None or self._eval_cache[0] != key:
            ds = as_source(x, y).eval_dataset(batch)
            self._eval_cache = (key, self.strategy.experimental_distribute_dataset(ds), x, y)
        totals = np.zeros(3)
        with self._lost_worker():
            for xb, yb in self._eval_cache[1]:
                totals += self._eval_call(xb, yb).numpy()
        return totals

    def _lost_worker(self):
        import contextlib

        import tensorflow as tf

        lost = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError,
                tf.errors.AbortedError)
        multiworker = self.info.kind == "multiworker"

        @contextlib.contextmanager
        def guard():
            try:
                yield
            except lost as e:
                if not multiworker:
                    raise
                raise WorkerLost(type(e).__name__) from None

        return guard()

    # ------------------------------------------------------------------ state
    def reseed(self, seed: int, epoch: int) -> None:
        for v in self.model.non_trainable_variables:
            if is_seed_state(v):
                v.assign(np.array(seed_value(seed, epoch), dtype=v.dtype))

    def sync_to_model(self) -> None:
        """Nothing to do: the Keras variables are the state."""

    def get_state(self) -> dict:
        out = {f"w{i}": np.asarray(w) for i, w in enumerate(self.model.get_weights())}
        out.update({f"g{i}": np.asarray(v.numpy()) for i, v in enumerate(seed_states(self.model))})
        out.update({opt_key(v): np.asarray(v.numpy()) for v in self.optimizer.variables})
        return out

    def set_state(self, state: dict) -> None:
        assign_state(self.model, self.optimizer, state)

    def learning_rate(self) -> float:
        lr = self.optimizer.learning_rate
        return float(lr.numpy() if hasattr(lr, "numpy") else lr)
