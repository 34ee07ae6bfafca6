"""The JAX engine's compiled functions: one training step, K of them in one compiled loop, and
the inference sums (``kerascnn.engines.jax``; this module is imported only on the JAX backend).

One step is Keras's stateless API: ``model.stateless_call(trainable, non_trainable, x,
training=True)`` under ``jax.value_and_grad``, then ``optimizer.stateless_apply(opt_vars, grads,
trainable)``. The loss is the TensorFlow loop's: the per-example (label-smoothed) cross-entropy,
summed and divided by the global batch; ``mixed_float16`` scales it through Keras's
``LossScaleOptimizer`` (stateless loss scaling, as Keras's own JAX trainer does).

``train_loop`` runs ``n`` steps inside one ``jax.jit`` (a ``lax.fori_loop`` with a dynamic trip
count: one XLA ``While``, one compilation for every K), each gathering its batch by index from
the epoch's order; ``train_one`` is one such step on its own, ``train_batch`` one step on a
batch given whole (streamed from disk). The state ``(trainable, non_trainable, optimizer)`` is
donated to every training call. Each takes the epoch's running float32 sums [loss, correct,
count] and returns them with its steps' sums added one step at a time, so the sums of an epoch
are the same however its steps are grouped into calls.

``augment``: pad-and-crop (1/8 of the side, reflected) + horizontal flip per image with
``jax.random`` keyed by (seed, epoch, step): the same transform as the TensorFlow engine's, with
different random numbers.
"""
from __future__ import annotations


class JaxSteps:
    """The jitted functions of one model and optimizer; ``batch`` (global) and ``augment`` are
    set before the first call (``JaxEngine.set_train_data``)."""

    def __init__(self, model, optimizer, num_classes: int, label_smoothing: float, sharded):
        import jax

        self.model, self.optimizer, self.sharded = model, optimizer, sharded
        self.num_classes, self.label_smoothing = int(num_classes), float(label_smoothing)
        self.batch, self.augment = None, False
        self.train_loop = jax.jit(self._train_loop, donate_argnums=(0,))
        self.train_one = jax.jit(self._train_one, donate_argnums=(0,))
        self.train_batch = jax.jit(self._train_batch, donate_argnums=(0,))
        self.eval_loop = jax.jit(self._eval_loop)

    # ------------------------------------------------------------------ loss and counts
    def _per_example_loss(self, y, p):
        import keras
        from keras import ops

        p = ops.cast(p, "float32")
        if self.label_smoothing:
            return keras.losses.categorical_crossentropy(ops.one_hot(y, self.num_classes), p,
                                                         label_smoothing=self.label_smoothing)
        return keras.losses.sparse_categorical_crossentropy(y, p)

    @staticmethod
    def _sums(per, p, y, mask=None):
        import jax.numpy as jnp

        correct = (jnp.argmax(p, -1).astype(y.dtype) == y).astype(jnp.float32)
        per = per.astype(jnp.float32)
        if mask is None:
            return jnp.stack([per.sum(), correct.sum(), jnp.float32(y.shape[0])])
        return jnp.stack([(per * mask).sum(), (correct * mask).sum(), mask.sum()])

    # ------------------------------------------------------------------ training
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

    def _one(self, state, images, labels, order, offset, step0, epoch, seed):
        """One step of ``_train_loop`` (batch ``offset`` of ``order``, step ``step0`` of the epoch)."""
        import jax

        batch = self.batch
        idx = jax.lax.dynamic_slice_in_dim(order, offset * batch, batch)
        x, y = images[idx], labels[idx]
        if self.augment:
            x = augment(x, jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), epoch), step0))
        x = jax.lax.with_sharding_constraint(x, self.sharded)
        y = jax.lax.with_sharding_constraint(y, self.sharded)
        return self._step(state, x, y, batch)

    def _train_one(self, state, totals, images, labels, order, offset, step0, epoch, seed):
        """``_one``, its sums added to the epoch's running ``totals`` (float32)."""
        state, sums = self._one(state, images, labels, order, offset, step0, epoch, seed)
        return state, totals + sums

    def _train_batch(self, state, totals, x, y):
        """One step on a batch given whole (streamed from disk; already augmented by the stream)."""
        state, sums = self._step(state, x, y, self.batch)
        return state, totals + sums

    def _train_loop(self, state, totals, images, labels, order, offset, step0, n, epoch, seed):
        """``n`` steps; step i takes batch ``offset + i`` of ``order`` and is step ``step0 + i`` of the
        epoch; each step's sums added to ``totals`` in turn (as ``n`` calls of ``_train_one`` would)."""
        import jax

        def body(i, carry):
            state, totals = carry
            state, sums = self._one(state, images, labels, order, offset + i, step0 + i, epoch, seed)
            return state, totals + sums

        return jax.lax.fori_loop(0, n, body, (state, totals))

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


def augment(x, key):
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
