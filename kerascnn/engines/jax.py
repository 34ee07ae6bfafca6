"""The JAX engine: Keras 3 on the JAX backend, K training steps per ``jax.jit`` call.

Runs in a process started with ``KERAS_BACKEND=jax`` and never imports TensorFlow for data in
memory (the GPU machine has JAX and Keras but no TensorFlow); streaming from disk reads through
``tf.data`` (below). One step is Keras's stateless API:
``model.stateless_call(trainable, non_trainable, x, training=True)`` under
``jax.value_and_grad``, then ``optimizer.stateless_apply(opt_vars, grads, trainable)``; one
jit-compiled function loops that step on the device over a traced step count (a
``lax.fori_loop`` with a dynamic trip count: one XLA ``While``, like ``lax.scan`` compiles to,
but one compilation serves every K), so small models pay one host round trip per K steps,
not per step.

* Data. The prepared training set is put on the device(s) once when it fits
  (``RESIDENT_BYTES``); each step gathers its batch by index from the epoch's order. Larger
  sets stream: the host gathers a fixed-size chunk of batches per call (one compiled shape).
* Streaming from disk (``StepData.x`` a ``stream.FileImages``, ``--stream``): the batches come
  from the TensorFlow engine's own ``tf.data`` stream (``stream.stream_dataset``, read through
  ``as_numpy_iterator``: same files, same ``data.epoch_order`` (seed, epoch) order, same
  augmentation), one jitted step per batch dispatched without waiting, so the next batch is
  decoded while the device computes. Only this input pipeline imports TensorFlow (its GPUs hidden
  from it); without TensorFlow streaming is refused in one line (``check_stream``). Several
  processes: each reads and decodes only its share of every global batch (``stream.worker_share``
  with (process_index, process_count)), assembled into the global batch by
  ``jax.make_array_from_process_local_data``.
* Epoch order. In memory, epoch ``e`` is ``np.random.default_rng([seed, e]).permutation(n)`` (a
  function of (seed, epoch) only, no TensorFlow), cut into ``n // batch`` full batches. This is
  NOT the TensorFlow engine's order (``data.epoch_order`` uses TF's stateless shuffle; a streamed
  run uses that one): each engine resumes exactly on itself; a run does not switch engines.
* Loss. As the TensorFlow loop: the per-example (label-smoothed) cross-entropy, summed and
  divided by the global batch; bf16 mixed precision through the Keras dtype policy set before
  ``build`` (the last layer computes in float32); ``mixed_float16`` through Keras's
  ``LossScaleOptimizer`` (stateless loss scaling, as Keras's own JAX trainer does).
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
* ``augment``: pad-and-crop (1/8 of the side, reflected) + horizontal flip per image with
  ``jax.random`` keyed by (seed, epoch, step): the same transform as the TensorFlow engine's,
  with different random numbers.
"""
from __future__ import annotations

import os

import numpy as np

from kerascnn.engines.base import StepData, assign_state, opt_key
from kerascnn.engines.jax_distributed import _DISTRIBUTED, distributed_settings, init_distributed  # noqa: F401

RESIDENT_BYTES = 2 << 30   # training images up to this size live on the device for the whole run
STREAM_CHUNK_BYTES = 256 << 20


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


def make_engine(opts, num_classes: int, echo):
    """The epoch loop's engine factory (``kerascnn.training.train(..., make_engine=make_engine)``);
    joins a multi-process run first when the environment describes one (``init_distributed``)."""
    if init_distributed():
        import jax

        echo(f"jax.distributed: process {jax.process_index()} of {jax.process_count()}, "
             f"{len(jax.local_devices())} local of {len(jax.devices())} devices")
    return JaxEngine(num_classes, float(opts.label_smoothing))


class JaxEngine:
    name = "jax"
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
        self._data = None
        self._eval_cache = None

    # ------------------------------------------------------------------ building
    def build(self, build_model, build_optimizer) -> None:
        import jax

        self.model = build_model()
        self.optimizer = build_optimizer()
        self.optimizer.build(self.model.trainable_variables)
        self._pull_state()
        self._train_fn = jax.jit(self._train_loop, donate_argnums=(0,))
        self._step_fn = jax.jit(self._train_one, donate_argnums=(0,))
        self._batch_fn = jax.jit(self._train_batch, donate_argnums=(0,))
        self._eval_fn = jax.jit(self._eval_loop)

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
        out.update({opt_key(v): np.asarray(v.value) for v in self.optimizer.variables})
        return out

    def set_state(self, state: dict) -> None:
        assign_state(self.model, self.optimizer, state)
        # the seed-generator states are not weights: keep the device's (reseed sets them per epoch)
        tv, ntv, ov = self.state
        seeds = {id(v): val for v, val in zip(self.model.non_trainable_variables, ntv) if _is_seed(v)}
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
            if _is_seed(v):
                val = jax.device_put(np.array([seed * 1000 + epoch, 0], dtype=v.dtype), self.replicated)
            new.append(val)
        self.state = (tv, new, ov)

    # ------------------------------------------------------------------ one step, K steps per call
    def _per_example_loss(self, y, p):
        import keras
        from keras import ops

        p = ops.cast(p, "float32")
        if self.label_smoothing:
            return keras.losses.categorical_crossentropy(ops.one_hot(y, self.num_classes), p,
                                                         label_smoothing=self.label_smoothing)
        return keras.losses.sparse_categorical_crossentropy(y, p)

    def _sums(self, per, p, y, mask=None):
        import jax.numpy as jnp

        correct = (jnp.argmax(p, -1).astype(y.dtype) == y).astype(jnp.float32)
        per = per.astype(jnp.float32)
        if mask is None:
            return jnp.stack([per.sum(), correct.sum(), jnp.float32(y.shape[0])])
        return jnp.stack([(per * mask).sum(), (correct * mask).sum(), mask.sum()])

    def _step(self, state, x, y, batch):
        import jax
        import keras

        tv, ntv, ov = state
        model, opt = self.model, self.optimizer

        def loss_fn(tv):
            p, new_ntv = model.stateless_call(tv, ntv, x, training=True)
            per = self._per_example_loss(y, p)
            loss = per.sum() / batch
            with keras.StatelessScope(state_mapping=list(zip(opt.variables, ov))):
                scaled = opt.scale_loss(loss)
            return scaled, (per, p, new_ntv)

        (_, (per, p, ntv)), grads = jax.value_and_grad(loss_fn, has_aux=True)(tv)
        tv, ov = opt.stateless_apply(ov, grads, tv)
        return (tv, ntv, ov), self._sums(per, p, y)

    def _train_one(self, state, images, labels, order, offset, step0, epoch, seed):
        """One step of ``_train_loop`` (batch ``offset`` of ``order``, step ``step0`` of the epoch)."""
        import jax

        batch = self._batch
        idx = jax.lax.dynamic_slice_in_dim(order, offset * batch, batch)
        x, y = images[idx], labels[idx]
        if self._augment:
            x = _augment(x, jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), epoch), step0))
        x = jax.lax.with_sharding_constraint(x, self.sharded)
        y = jax.lax.with_sharding_constraint(y, self.sharded)
        return self._step(state, x, y, batch)

    def _train_batch(self, state, x, y):
        """One step on a batch given whole (streamed from disk; already augmented by the stream)."""
        return self._step(state, x, y, self._batch)

    def _train_loop(self, state, images, labels, order, offset, step0, n, epoch, seed):
        """``n`` steps; step i takes batch ``offset + i`` of ``order`` and is step ``step0 + i`` of the epoch."""
        import jax
        import jax.numpy as jnp

        def body(i, carry):
            state, totals = carry
            state, sums = self._train_one(state, images, labels, order, offset + i, step0 + i, epoch, seed)
            return state, totals + sums

        return jax.lax.fori_loop(0, n, body, (state, jnp.zeros(3, jnp.float32)))

    # ------------------------------------------------------------------ the training stream
    def set_train_data(self, data: StepData) -> None:
        import jax

        if data.batch % self.replicas:
            raise ValueError(f"batch size {data.batch} must be divisible by the {self.replicas} devices")
        if data.steps_per_epoch < 1:
            raise ValueError(f"batch size {data.batch} is larger than the {len(data.x)} training images")
        self._data = data
        self._batch = int(data.batch)
        self._augment = bool(data.augment)
        self._epoch, self._step_in_epoch = int(data.first_epoch), 0
        self._batches = None
        if not isinstance(data.x, np.ndarray):   # stream.FileImages: decoded from disk by tf.data
            self._set_stream(data)
            return
        x = np.ascontiguousarray(data.x, dtype=np.float32)
        y = np.asarray(data.y, dtype=np.int32)
        self._resident = x.nbytes <= RESIDENT_BYTES
        if self._resident:
            self._images = jax.device_put(x, self.replicated)
            self._labels = jax.device_put(y, self.replicated)
        else:
            self._x_host, self._y_host = x, y
            per_step = max(1, x[:1].nbytes * self._batch)
            self._chunk = int(max(1, min(data.steps_per_epoch, STREAM_CHUNK_BYTES // per_step)))
        self._order_epoch = None

    def check_stream(self) -> None:
        """Refuse streaming from disk in one line where TensorFlow (its ``tf.data``) is missing."""
        from kerascnn.errors import ConfigError

        try:
            _input_tensorflow()
        except ImportError:
            raise ConfigError("streaming from disk (--stream) on the jax engine reads the files through "
                              "TensorFlow's tf.data, which is not installed here; install tensorflow, or use "
                              "--stream off (the data must then fit in memory)") from None

    def _set_stream(self, data: StepData) -> None:
        """The TF engine's stream (same order and augmentation), this process's share of each batch."""
        from kerascnn.data import stream

        _input_tensorflow()
        x = data.x
        self._global_shape = (self._batch,) + tuple(x.size) + (x.channels,)
        share = self._batch // self.processes
        # the rows of the global batch this process's devices hold must be its worker_share slice
        rows = [sl[0].indices(self._batch)[:2] for sl in
                self.sharded.addressable_devices_indices_map(self._global_shape).values()]
        lo, hi = min(r[0] for r in rows), max(r[1] for r in rows)
        if (lo, hi) != (self.process * share, (self.process + 1) * share) or sum(b - a for a, b in rows) != share:
            raise RuntimeError(f"process {self.process}'s devices hold rows {lo}..{hi} of the batch, not its "
                               f"share {self.process * share}..{(self.process + 1) * share}")
        ds = stream.stream_dataset(x, data.y, self._batch, data.seed, data.first_epoch, data.epochs,
                                   bool(data.augment), worker=(self.process, self.processes))
        self._batches = ds.as_numpy_iterator()

    def _train_streamed(self, n: int) -> np.ndarray:
        """``n`` steps on batches from the file stream: one jitted step each, dispatched without waiting."""
        import jax

        d, parts = self._data, []
        for _ in range(n):
            if self._epoch >= d.epochs:
                raise RuntimeError("the training stream is exhausted")
            xb, yb = next(self._batches)
            x = jax.make_array_from_process_local_data(self.sharded, xb, self._global_shape)
            y = jax.make_array_from_process_local_data(self.sharded, yb.astype(np.int32), self._global_shape[:1])
            self.state, sums = self._batch_fn(self.state, x, y)
            parts.append(sums)
            self._step_in_epoch += 1
            if self._step_in_epoch == d.steps_per_epoch:
                self._epoch, self._step_in_epoch = self._epoch + 1, 0
        return np.asarray(parts, dtype=np.float64).reshape(-1, 3).sum(0)

    def _order(self, epoch: int):
        import jax

        if self._order_epoch != epoch:
            d = self._data
            order = epoch_order(len(d.x), d.seed, epoch)[: d.steps_per_epoch * d.batch]
            self._order_host = order
            self._order_dev = jax.device_put(order, self.replicated) if self._resident else None
            self._order_epoch = epoch
        return self._order_host, self._order_dev

    def train_steps(self, n: int) -> np.ndarray:
        """The next ``n`` steps of the stream (a call may cross an epoch boundary)."""
        d = self._data
        if d is None:
            raise RuntimeError("set_train_data first")
        if self._batches is not None:
            return self._train_streamed(n)
        totals = np.zeros(3)
        while n > 0:
            if self._epoch >= d.epochs:
                raise RuntimeError("the training stream is exhausted")
            k = min(n, d.steps_per_epoch - self._step_in_epoch)
            totals += self._run(self._epoch, self._step_in_epoch, k)
            n -= k
            self._step_in_epoch += k
            if self._step_in_epoch == d.steps_per_epoch:
                self._epoch, self._step_in_epoch = self._epoch + 1, 0
        return totals

    def _run(self, epoch: int, start: int, k: int) -> np.ndarray:
        import jax

        order_host, order_dev = self._order(epoch)
        seed = np.int32(self._data.seed % (2 ** 31))
        if self._resident:
            return self._call(self._images, self._labels, order_dev, start, start, k, epoch, seed)
        totals, b = np.zeros(3), self._batch
        while k > 0:   # streaming: fixed-shape chunks of self._chunk batches (the last one padded)
            c = min(k, self._chunk)
            idx = order_host[start * b:(start + c) * b]
            xs = np.zeros((self._chunk * b,) + self._x_host.shape[1:], np.float32)
            ys = np.zeros(self._chunk * b, np.int32)
            xs[:len(idx)], ys[:len(idx)] = self._x_host[idx], self._y_host[idx]
            local = np.arange(self._chunk * b, dtype=np.int32)
            totals += self._call(jax.device_put(xs, self.replicated), jax.device_put(ys, self.replicated),
                                 jax.device_put(local, self.replicated), 0, start, c, epoch, seed)
            k -= c
            start += c
        return totals

    def _call(self, images, labels, order, offset, step0, k, epoch, seed) -> np.ndarray:
        """``k`` steps: one fused call, or ``k`` single-step calls dispatched without waiting."""
        i32 = np.int32
        if self.fused:
            self.state, sums = self._train_fn(self.state, images, labels, order, i32(offset), i32(step0), i32(k),
                                              i32(epoch), seed)
            return np.asarray(sums, dtype=np.float64)
        parts = []
        for i in range(k):
            self.state, sums = self._step_fn(self.state, images, labels, order, i32(offset + i), i32(step0 + i),
                                             i32(epoch), seed)
            parts.append(sums)
        return np.asarray(parts, dtype=np.float64).reshape(-1, 3).sum(0)

    # ------------------------------------------------------------------ evaluation
    def _eval_loop(self, state, xs, ys, mask):
        import jax

        tv, ntv, _ = state
        nb, b = mask.shape

        def body(i, totals):
            x = jax.lax.with_sharding_constraint(jax.lax.dynamic_index_in_dim(xs, i, keepdims=False), self.sharded)
            y = jax.lax.dynamic_index_in_dim(ys, i, keepdims=False)
            m = jax.lax.dynamic_index_in_dim(mask, i, keepdims=False)
            p, _ = self.model.stateless_call(tv, ntv, x, training=False)
            return totals + self._sums(self._per_example_loss(y, p), p, y, m)

        import jax.numpy as jnp

        return jax.lax.fori_loop(0, nb, body, jnp.zeros(3, jnp.float32))

    def evaluate(self, x: np.ndarray, y: np.ndarray, batch: int) -> np.ndarray:
        """Inference-mode sums; the set is padded to whole batches (padding masked out) and, when
        it fits, kept on the device between calls with the same arrays (the validation set)."""
        import jax

        if len(x) == 0:
            return np.zeros(3)
        b = int(batch) + (-int(batch)) % self.replicas
        if not isinstance(x, np.ndarray):   # stream.FileImages
            return self._evaluate_files(x, y, b)
        key = (x, y, b)   # the arrays themselves (held, so their ids cannot be reused), compared by identity
        cached = self._eval_cache
        if cached is None or cached[0][0] is not x or cached[0][1] is not y or cached[0][2] != b:
            nb = -(-len(x) // b)
            pad = nb * b - len(x)
            xs = np.concatenate([np.asarray(x, np.float32), np.zeros((pad,) + x.shape[1:], np.float32)])
            ys = np.concatenate([np.asarray(y, np.int32), np.zeros(pad, np.int32)])
            mask = np.concatenate([np.ones(len(x), np.float32), np.zeros(pad, np.float32)])
            shape = (nb, b)
            arrays = (xs.reshape(shape + x.shape[1:]), ys.reshape(shape), mask.reshape(shape))
            if xs.nbytes > RESIDENT_BYTES:   # too big to keep: evaluate in slices of batches
                return self._evaluate_streaming(arrays)
            self._eval_cache = (key, jax.device_put(arrays, self.replicated))
        return np.asarray(self._eval_fn(self.state, *self._eval_cache[1]), dtype=np.float64)

    def _evaluate_files(self, x, y, b: int) -> np.ndarray:
        """Inference-mode sums over images decoded from disk by ``stream.eval_dataset`` (file order),
        batch by batch (the last one padded and masked: one compiled shape). Every process reads
        the whole (validation) set, as it holds the whole in-memory one."""
        import jax

        from kerascnn.data import stream

        _input_tensorflow()
        parts = []
        for xb, yb in stream.eval_dataset(x, y, b).as_numpy_iterator():
            m, pad = len(xb), b - len(xb)
            mask = np.concatenate([np.ones(m, np.float32), np.zeros(pad, np.float32)])
            if pad:
                xb = np.concatenate([xb, np.zeros((pad,) + xb.shape[1:], xb.dtype)])
                yb = np.concatenate([yb, np.zeros(pad, yb.dtype)])
            arrays = (xb[None].astype(np.float32), yb[None].astype(np.int32), mask[None])
            parts.append(self._eval_fn(self.state, *jax.device_put(arrays, self.replicated)))
        return np.asarray(parts, dtype=np.float64).reshape(-1, 3).sum(0)

    def _evaluate_streaming(self, arrays) -> np.ndarray:
        import jax

        xs, ys, mask = arrays
        per = max(1, STREAM_CHUNK_BYTES // max(1, xs[0].nbytes))
        totals = np.zeros(3)
        for i in range(0, len(xs), per):
            part = [a[i:i + per] for a in (xs, ys, mask)]
            if len(part[0]) < per:   # one compiled shape: pad the last slice with masked batches
                part = [np.concatenate([a, np.zeros((per - len(a),) + a.shape[1:], a.dtype)]) for a in part]
            totals += np.asarray(self._eval_fn(self.state, *jax.device_put(part, self.replicated)), np.float64)
        return totals


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


def _is_seed(var) -> bool:
    return "seed_generator_state" in var.path


def _augment(x, key):
    """Pad-and-crop (1/8 of the side, reflected borders) and a horizontal flip per image."""
    import jax
    import jax.numpy as jnp

    n, h, w, _ = x.shape
    ph, pw = max(1, h // 8), max(1, w // 8)
    mode = "reflect" if ph < h and pw < w else "symmetric"
    padded = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)), mode=mode)
    k1, k2, k3 = jax.random.split(key, 3)
    oy = jax.random.randint(k1, (n,), 0, 2 * ph + 1)
    ox = jax.random.randint(k2, (n,), 0, 2 * pw + 1)
    crop = jax.vmap(lambda img, a, b: jax.lax.dynamic_slice(img, (a, b, 0), (h, w, img.shape[-1])))
    x = crop(padded, oy, ox)
    flip = jax.random.uniform(k3, (n,)) < 0.5
    return jnp.where(flip[:, None, None, None], x[:, :, ::-1], x)
