"""Keras layers for what stock Keras cannot build exactly (a leaf module: it imports only Keras).

* ``NegInfPadding2D``: pads H and W with -inf, the padding of a max pool (PyTorch's);
* ``WindowPool2D``: max pooling with dilation, and max/average pooling with PyTorch's ``ceil_mode``
  (the last window may hang over the padded input; an average divides by the window clipped to the
  padded input, as ``torch.nn.functional.avg_pool2d`` with ``count_include_pad=True``);
* ``SubsampledConv2D`` / ``SubsampledDepthwiseConv2D`` / ``SubsampledSeparableConv2D``: a convolution
  with stride > 1 *and* dilation > 1, which Keras refuses, computed as the stride-1 dilated convolution
  followed by keeping every S-th row and column (the same numbers: output (i, j) of a strided layer is
  output (S i, S j) of the stride-1 one). Their weights are those of the stock layer (same names and
  shapes); ``kerascnn values`` builds them, training does not (they do S^2 times the work);
* ``SpreadConv2DTranspose``: a transposed convolution with stride > 1 and dilation > 1 (Keras refuses
  it too), as the input spread out with zeros and a stride-1 dilated transposed convolution;
* ``LayerScale``: per-channel learned scale (ConvNeXt; ``keras.applications``' own is not public API).

Only the backend-neutral ``keras.ops`` API is used. Every layer serializes under ``kerascnn>``.
"""
from __future__ import annotations

import math

import keras
import numpy as np


def _pairs(padding) -> tuple:
    return tuple(tuple(int(v) for v in p) for p in padding)


@keras.saving.register_keras_serializable(package="kerascnn")
class NegInfPadding2D(keras.layers.Layer):
    """Pads H and W with -inf: the padding of a max pool (PyTorch's), which never wins a maximum."""

    def __init__(self, padding=((1, 1), (1, 1)), **kwargs):
        super().__init__(**kwargs)
        self.padding = _pairs(padding)

    def call(self, x):
        (t, b), (l, r) = self.padding
        return keras.ops.pad(x, [[0, 0], [t, b], [l, r], [0, 0]], constant_values=float("-inf"))

    def compute_output_shape(self, input_shape):
        (t, b), (l, r) = self.padding
        n, h, w, c = input_shape
        return (n, None if h is None else h + t + b, None if w is None else w + l + r, c)

    def get_config(self):
        return {**super().get_config(), "padding": [list(p) for p in self.padding]}


def pad_layer(padding, fill: str, name: str):
    """The explicit padding layer before a "valid" conv/pool: zeros, or -inf for max pooling."""
    if fill == "-inf":
        return NegInfPadding2D(padding, name=name)
    return keras.layers.ZeroPadding2D(padding, name=name)


def window_out(n: int, f_eff: int, s: int, lo: int, hi: int, ceil: bool) -> int:
    """PyTorch's pooling output length: floor (or ceil) of (n + lo + hi - f_eff)/s + 1; with ceil,
    a last window that would start in the bottom/right padding or beyond is dropped."""
    span = n + lo + hi - f_eff
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= n + lo:
        out -= 1
    return out


@keras.saving.register_keras_serializable(package="kerascnn")
class WindowPool2D(keras.layers.Layer):
    """Max or average pooling over ``pool_size`` windows with ``strides``, ``dilation`` (max only),
    explicit ``padding`` ((top, bottom), (left, right)) and PyTorch's ``ceil_mode``."""

    def __init__(self, kind="max", pool_size=(2, 2), strides=(2, 2), dilation=(1, 1),
                 padding=((0, 0), (0, 0)), ceil_mode=False, **kwargs):
        super().__init__(**kwargs)
        if kind not in ("max", "avg"):
            raise ValueError(f"kind must be 'max' or 'avg'; received {kind!r}")
        self.kind = kind
        self.pool_size = tuple(int(v) for v in pool_size)
        self.strides = tuple(int(v) for v in strides)
        self.dilation = tuple(int(v) for v in dilation)
        self.padding = _pairs(padding)
        self.ceil_mode = bool(ceil_mode)

    def _geometry(self, h, w):
        out = []
        for n, f, s, d, (lo, hi) in zip((h, w), self.pool_size, self.strides, self.dilation, self.padding):
            f_eff = 1 + d * (f - 1)
            m = window_out(n, f_eff, s, lo, hi, self.ceil_mode)
            extra = max((m - 1) * s + f_eff - (n + lo + hi), 0)  # the ceil overhang past the padding
            out.append((m, extra))
        return out

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        if h is None or w is None:
            return (n, None, None, c)
        (mh, _), (mw, _) = self._geometry(h, w)
        return (n, mh, mw, c)

    def _divisor(self, h, w):
        """Per output position: the window clipped to the padded input (the overhang not counted)."""
        sizes = []
        for n, f, s, (lo, hi), (m, _) in zip((h, w), self.pool_size, self.strides, self.padding,
                                             self._geometry(h, w)):
            start = np.arange(m) * s - lo
            sizes.append(np.minimum(start + f, n + hi) - start)
        return np.outer(sizes[0], sizes[1]).astype("float32")[None, :, :, None]

    def call(self, x):
        h, w = x.shape[1], x.shape[2]
        (mh, eh), (mw, ew) = self._geometry(h, w)
        (t, b), (l, r) = self.padding
        fill = float("-inf") if self.kind == "max" else 0.0
        x = keras.ops.pad(x, [[0, 0], [t, b + eh], [l, r + ew], [0, 0]], constant_values=fill)
        (fh, fw), (sh, sw), (dh, dw) = self.pool_size, self.strides, self.dilation
        taps = [x[:, i * dh:i * dh + (mh - 1) * sh + 1:sh, j * dw:j * dw + (mw - 1) * sw + 1:sw, :]
                for i in range(fh) for j in range(fw)]
        if self.kind == "max":
            y = taps[0]
            for tap in taps[1:]:
                y = keras.ops.maximum(y, tap)
            return y
        y = taps[0]
        for tap in taps[1:]:
            y = y + tap
        return y / keras.ops.convert_to_tensor(self._divisor(h, w), dtype=y.dtype)

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "pool_size": list(self.pool_size),
                "strides": list(self.strides), "dilation": list(self.dilation),
                "padding": [list(p) for p in self.padding], "ceil_mode": self.ceil_mode}


class _Subsampled:
    """Mixin: the stock layer at stride 1, then every S-th row and column (stride S, dilation D)."""

    def __init__(self, *args, strides=(1, 1), **kwargs):
        self.subsample = (strides, strides) if isinstance(strides, int) else tuple(int(s) for s in strides)
        super().__init__(*args, strides=1, **kwargs)

    def call(self, inputs):
        y = super().call(inputs)
        sh, sw = self.subsample
        return y[:, ::sh, ::sw, :]

    def compute_output_shape(self, input_shape):
        n, h, w, c = super().compute_output_shape(input_shape)
        sh, sw = self.subsample
        return (n, None if h is None else math.ceil(h / sh), None if w is None else math.ceil(w / sw), c)

    def get_config(self):
        return {**super().get_config(), "strides": list(self.subsample)}


@keras.saving.register_keras_serializable(package="kerascnn")
class SubsampledConv2D(_Subsampled, keras.layers.Conv2D):
    """Conv2D with stride > 1 and dilation > 1 (see the module docstring)."""


@keras.saving.register_keras_serializable(package="kerascnn")
class SubsampledDepthwiseConv2D(_Subsampled, keras.layers.DepthwiseConv2D):
    """DepthwiseConv2D with stride > 1 and dilation > 1."""


@keras.saving.register_keras_serializable(package="kerascnn")
class SubsampledSeparableConv2D(_Subsampled, keras.layers.SeparableConv2D):
    """SeparableConv2D with stride > 1 and dilation > 1 (the pointwise 1x1 commutes with subsampling)."""


@keras.saving.register_keras_serializable(package="kerascnn")
class SpreadConv2DTranspose(keras.layers.Conv2DTranspose):
    """Conv2DTranspose with stride > 1 and dilation > 1, which Keras refuses: the input spread out with
    S-1 zeros between pixels (and ``output_padding`` zero rows/columns at the end), then the stride-1
    dilated transposed convolution; PyTorch's conv_transpose2d numbers. Weights as the stock layer's."""

    def __init__(self, *args, strides=(1, 1), output_padding=None, **kwargs):
        self.spread = (strides, strides) if isinstance(strides, int) else tuple(int(s) for s in strides)
        op = (0, 0) if output_padding is None else output_padding
        self.extra = (op, op) if isinstance(op, int) else tuple(int(v) for v in op)
        super().__init__(*args, strides=1, **kwargs)

    def _spread(self, x):
        for axis, s, op in ((1, self.spread[0], self.extra[0]), (2, self.spread[1], self.extra[1])):
            n = x.shape[axis]
            if s > 1:
                y = keras.ops.stack([x] + [keras.ops.zeros_like(x)] * (s - 1), axis=axis + 1)
                shape = list(x.shape)
                shape[0], shape[axis] = -1, n * s
                x = keras.ops.reshape(y, shape)
                x = x[:, :(n - 1) * s + 1] if axis == 1 else x[:, :, :(n - 1) * s + 1]
            if op:
                pad = [[0, 0], [0, op if axis == 1 else 0], [0, op if axis == 2 else 0], [0, 0]]
                x = keras.ops.pad(x, pad)
        return x

    def call(self, inputs):
        return super().call(self._spread(inputs))

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        grown = [None if v is None else (v - 1) * s + 1 + op for v, s, op in zip((h, w), self.spread, self.extra)]
        return super().compute_output_shape((n, *grown, c))

    def get_config(self):
        return {**super().get_config(), "strides": list(self.spread), "output_padding": list(self.extra)}


@keras.saving.register_keras_serializable(package="kerascnn")
class LayerScale(keras.layers.Layer):
    """y = x * gamma, one learned ``gamma`` per channel, initialised to ``init_values``
    (ConvNeXt, Touvron et al. 2021): C parameters."""

    def __init__(self, init_values=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.init_values = float(init_values)

    def build(self, input_shape):
        self.gamma = self.add_weight(shape=(input_shape[-1],), name="gamma",
                                     initializer=keras.initializers.Constant(self.init_values))

    def call(self, x):
        return x * keras.ops.cast(self.gamma, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "init_values": self.init_values}
