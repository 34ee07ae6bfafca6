"""How the JAX engine feeds its steps (``kerascnn.engines.jax``; JAX backend only).

* ``ArrayFeed``: images in memory. Put on the device(s) once when they fit (``RESIDENT_BYTES``):
  each step gathers its batch by index from the epoch's order. Larger sets: the host gathers a
  fixed-size chunk of batches per call (one compiled shape, the last chunk padded). Epoch ``e``
  is ``epoch_order(n, seed, e)`` (NumPy, a function of (seed, epoch) only). K steps are one fused
  call (``JaxSteps.train_loop``) on accelerators, or K single-step calls dispatched without
  waiting on CPUs (XLA:CPU compiles a loop body ~5x slower than the same step on its own).
* ``FileFeed``: images streamed from disk by the data source's own ``tf.data`` stream (same
  files, order and augmentation as the TensorFlow engine), one jitted step per batch dispatched
  without waiting, so the next batch is decoded while the device computes. Several processes:
  each reads only its share of every global batch, assembled into the global batch by
  ``jax.make_array_from_process_local_data``.
* ``Evaluator``: inference sums; arrays padded to whole batches (padding masked) and, when they
  fit, kept on the device between calls with the same arrays (the validation set); images on
  disk batch by batch.
"""
from __future__ import annotations

import numpy as np

RESIDENT_BYTES = 2 << 30   # training images up to this size live on the device for the whole run
STREAM_CHUNK_BYTES = 256 << 20


class ArrayFeed:
    """Training batches from arrays in memory (resident on the device, or host-gathered chunks)."""

    def __init__(self, data, steps, replicated, fused: bool, epoch_order):
        import jax

        x, y = data.source.arrays()
        x = np.ascontiguousarray(x, dtype=np.float32)
        y = np.asarray(y, dtype=np.int32)
        self.data, self.steps, self.replicated, self.fused = data, steps, replicated, fused
        self.epoch_order = epoch_order
        self.resident = x.nbytes <= RESIDENT_BYTES
        if self.resident:
            self.images, self.labels = jax.device_put(x, replicated), jax.device_put(y, replicated)
        else:
            self.x_host, self.y_host = x, y
            per_step = max(1, x[:1].nbytes * data.batch)
            self.chunk = int(max(1, min(data.steps_per_epoch, STREAM_CHUNK_BYTES // per_step)))
        self._order_epoch = None

    def _order(self, epoch: int):
        import jax

        if self._order_epoch != epoch:
            d = self.data
            order = self.epoch_order(len(d.x), d.seed, epoch)[: d.steps_per_epoch * d.batch]
            self._order_host = order
            self._order_dev = jax.device_put(order, self.replicated) if self.resident else None
            self._order_epoch = epoch
        return self._order_host, self._order_dev

    def run(self, state, totals, epoch: int, start: int, k: int):
        """``k`` steps of ``epoch`` from step ``start``: (new state, float32 ``totals`` + their sums)."""
        import jax

        order_host, order_dev = self._order(epoch)
        seed = np.int32(self.data.seed % (2 ** 31))
        if self.resident:
            return self._call(state, totals, self.images, self.labels, order_dev, start, start, k, epoch, seed)
        b = self.data.batch
        while k > 0:   # fixed-shape chunks of self.chunk batches (the last one padded)
            c = min(k, self.chunk)
            idx = order_host[start * b:(start + c) * b]
            xs = np.zeros((self.chunk * b,) + self.x_host.shape[1:], np.float32)
            ys = np.zeros(self.chunk * b, np.int32)
            xs[:len(idx)], ys[:len(idx)] = self.x_host[idx], self.y_host[idx]
            local = np.arange(self.chunk * b, dtype=np.int32)
            state, totals = self._call(state, totals, jax.device_put(xs, self.replicated),
                                       jax.device_put(ys, self.replicated), jax.device_put(local, self.replicated), 0,
                                       start, c, epoch, seed)
            k -= c
            start += c
        return state, totals

    def _call(self, state, totals, images, labels, order, offset, step0, k, epoch, seed):
        """``k`` steps: one fused call, or ``k`` single-step calls dispatched without waiting (the
        running sums stay on the device between them)."""
        import jax

        i32 = np.int32
        totals = jax.device_put(np.asarray(totals, np.float32), self.replicated)
        if self.fused:
            state, totals = self.steps.train_loop(state, totals, images, labels, order, i32(offset), i32(step0),
                                                  i32(k), i32(epoch), seed)
            return state, np.asarray(totals, dtype=np.float32)
        for i in range(k):
            state, totals = self.steps.train_one(state, totals, images, labels, order, i32(offset + i),
                                                 i32(step0 + i), i32(epoch), seed)
        return state, np.asarray(totals, dtype=np.float32)


class FileFeed:
    """Training batches decoded from disk by the source's ``tf.data`` stream; this process's share."""

    def __init__(self, data, steps, sharded, process: int, processes: int):
        batch = int(data.batch)
        from jax.sharding import NamedSharding, PartitionSpec

        self.steps, self.sharded = steps, sharded
        self.replicated = NamedSharding(sharded.mesh, PartitionSpec())
        self.global_shape = (batch,) + data.source.input_shape
        share = batch // processes
        # the rows of the global batch this process's devices hold must be its worker_share slice
        rows = [sl[0].indices(batch)[:2] for sl in sharded.addressable_devices_indices_map(self.global_shape).values()]
        lo, hi = min(r[0] for r in rows), max(r[1] for r in rows)
        if (lo, hi) != (process * share, (process + 1) * share) or sum(b - a for a, b in rows) != share:
            raise RuntimeError(f"process {process}'s devices hold rows {lo}..{hi} of the batch, not its "
                               f"share {process * share}..{(process + 1) * share}")
        ds = data.source.train_dataset(batch, data.seed, data.first_epoch, data.epochs, bool(data.augment),
                                       worker=(process, processes), first_step=data.first_step)
        self.batches = ds.as_numpy_iterator()

    def run(self, state, totals, epoch: int, start: int, k: int):
        """The next ``k`` batches of the stream, one jitted step each: (new state, float32
        ``totals`` + their sums)."""
        import jax

        totals = jax.device_put(np.asarray(totals, np.float32), self.replicated)
        for _ in range(k):
            xb, yb = next(self.batches)
            x = jax.make_array_from_process_local_data(self.sharded, xb, self.global_shape)
            y = jax.make_array_from_process_local_data(self.sharded, yb.astype(np.int32), self.global_shape[:1])
            state, totals = self.steps.train_batch(state, totals, x, y)
        return state, np.asarray(totals, dtype=np.float32)


class Evaluator:
    """Inference-mode sums [sum loss, correct, count] of a model's state over a data source."""

    def __init__(self, steps, replicated):
        self.steps, self.replicated = steps, replicated
        self._cache = None

    def sums(self, state, source, b: int) -> np.ndarray:
        if not source.in_memory:
            return self._files(state, source, b)
        import jax

        x, y = source.arrays()
        key = (x, y, b)   # the arrays themselves (held, so their ids cannot be reused), compared by identity
        cached = self._cache
        if cached is None or cached[0][0] is not x or cached[0][1] is not y or cached[0][2] != b:
            nb = -(-len(x) // b)
            pad = nb * b - len(x)
            xs = np.concatenate([np.asarray(x, np.float32), np.zeros((pad,) + x.shape[1:], np.float32)])
            ys = np.concatenate([np.asarray(y, np.int32), np.zeros(pad, np.int32)])
            mask = np.concatenate([np.ones(len(x), np.float32), np.zeros(pad, np.float32)])
            shape = (nb, b)
            arrays = (xs.reshape(shape + x.shape[1:]), ys.reshape(shape), mask.reshape(shape))
            if xs.nbytes > RESIDENT_BYTES:   # too big to keep: evaluate in slices of batches
                return self._slices(state, arrays)
            self._cache = (key, jax.device_put(arrays, self.replicated))
        return np.asarray(self.steps.eval_loop(state, *self._cache[1]), dtype=np.float64)

    def _files(self, state, source, b: int) -> np.ndarray:
        """Images decoded from disk (file order), batch by batch, the last one padded and masked
        (one compiled shape). Every process reads the whole (validation) set."""
        import jax

        parts = []
        for xb, yb in source.batches(b):
            m, pad = len(xb), b - len(xb)
            mask = np.concatenate([np.ones(m, np.float32), np.zeros(pad, np.float32)])
            if pad:
                xb = np.concatenate([xb, np.zeros((pad,) + xb.shape[1:], xb.dtype)])
                yb = np.concatenate([yb, np.zeros(pad, yb.dtype)])
            arrays = (xb[None].astype(np.float32), yb[None].astype(np.int32), mask[None])
            parts.append(self.steps.eval_loop(state, *jax.device_put(arrays, self.replicated)))
        return np.asarray(parts, dtype=np.float64).reshape(-1, 3).sum(0)

    def _slices(self, state, arrays) -> np.ndarray:
        import jax

        xs, ys, mask = arrays
        per = max(1, STREAM_CHUNK_BYTES // max(1, xs[0].nbytes))
        totals = np.zeros(3)
        for i in range(0, len(xs), per):
            part = [a[i:i + per] for a in (xs, ys, mask)]
            if len(part[0]) < per:   # one compiled shape: pad the last slice with masked batches
                part = [np.concatenate([a, np.zeros((per - len(a),) + a.shape[1:], a.dtype)]) for a in part]
            totals += np.asarray(self.steps.eval_loop(state, *jax.device_put(part, self.replicated)), np.float64)
        return totals
