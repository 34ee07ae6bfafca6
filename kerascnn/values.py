"""The values a layer computes, on a small input: the lectures' worked examples, checked by Keras.

``run_values(model_or_spec, x, kernel=None, bias=None, weights=None)`` builds the spec (or a
registered model, or loads a ``.keras`` file), sets its weights, runs one input and returns the
outputs layer by layer. Weights:

* default: every kernel (conv, depthwise, pointwise, dense) all ones, every bias zero; other
  weights keep Keras's initial values (BatchNorm: gamma 1, beta 0, mean 0, variance 1);
* ``kernel``/``bias``: the first layer with a kernel gets these instead;
* ``weights``: a ``.npz`` whose keys are ``LAYER/WEIGHT`` (``conv2d/kernel``, ``conv2d/bias``, as
  ``kerascnn values --save-weights`` writes them) or a ``.keras`` file, weights copied from its layers
  of the same name.

Grids are written as text: values separated by commas or spaces, rows by ``;``, channels by ``|``
and (for a kernel) filters by ``/``; ``arange:HxW`` or ``arange:HxWxC`` is 0, 1, 2, ... (channel
by channel). ``.npy`` files hold (H, W) or (H, W, C) inputs and (F, F), (F, F, C_in) or
(F, F, C_in, K) kernels (Keras's layout).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from kerascnn.errors import ConfigError, DataError, first_line

MAX_ELEMENTS = 1_000_000


# --------------------------------------------------------------------------- parsing
def _grid(text: str, what: str) -> np.ndarray:
    rows = [r for r in (r.strip() for r in text.split(";")) if r]
    try:
        vals = [[float(v) for v in re.split(r"[,\s]+", r) if v] for r in rows]
    except ValueError:
        raise ConfigError(f"{what}: values must be numbers, rows separated by ';', channels by '|'; "
                          f"received {text.strip()!r}") from None
    if not vals or len({len(r) for r in vals}) != 1 or not vals[0]:
        raise ConfigError(f"{what}: every row needs the same number of values; received "
                          f"{[len(r) for r in vals]} values per row")
    return np.array(vals, dtype=np.float32)


def _channels(text: str, what: str) -> np.ndarray:
    """'a;b | c;d' -> (H, W, C)."""
    grids = [_grid(c, what) for c in text.split("|")]
    if len({g.shape for g in grids}) != 1:
        raise ConfigError(f"{what}: every channel must have the same size; received "
                          f"{', '.join('x'.join(map(str, g.shape)) for g in grids)}")
    return np.stack(grids, axis=-1)


def _load_npy(path: str, what: str) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{what}: cannot read {path}: {e}") from None
    if not isinstance(arr, np.ndarray) or not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"{what}: {path} must hold one numeric array")
    return arr.astype(np.float32)


def parse_input(text: str) -> np.ndarray:
    """Text grid, ``arange:HxW[xC]`` or a ``.npy`` file -> float32 (H, W, C) (or (N,) from a 1-D .npy).
    One row (``"1,2,-1,1,-3"``) is a 1xW grid: the lectures' 1-D examples (kernels ``1xF``); a model
    whose input is a vector reads it as one."""
    text = text.strip()
    m = re.fullmatch(r"arange:(\d+)[x,](\d+)(?:[x,](\d+))?", text)
    if m:
        h, w, c = int(m.group(1)), int(m.group(2)), int(m.group(3) or 1)
        if h * w * c > MAX_ELEMENTS or min(h, w, c) < 1:
            raise ConfigError(f"--input {text}: between 1 and {MAX_ELEMENTS:,} values")
        return np.arange(h * w * c, dtype=np.float32).reshape(c, h, w).transpose(1, 2, 0)
    if text.endswith(".npy"):
        x = _load_npy(text, "--input")
    else:
        x = _channels(text, "--input")
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim not in (1, 3) or x.size > MAX_ELEMENTS or x.size == 0:
        raise ConfigError(f"--input must be an (H, W) or (H, W, C) array of at most {MAX_ELEMENTS:,} values; "
                          f"received shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise DataError("--input has NaN or infinite values")
    return x


def parse_kernel(text: str) -> np.ndarray:
    """'k | k / k | k' (filters '/', channels '|', rows ';') or .npy -> (F_h, F_w, C_in, K)."""
    text = text.strip()
    if text.endswith(".npy"):
        k = _load_npy(text, "--kernel")
        if k.ndim < 2 or k.ndim > 4:
            raise ConfigError(f"--kernel .npy must be (F, F), (F, F, C_in) or (F, F, C_in, K); received {k.shape}")
        while k.ndim < 4:
            k = k[..., None]
        return k
    filters = [_channels(f, "--kernel") for f in text.split("/")]
    if len({f.shape for f in filters}) != 1:
        raise ConfigError("--kernel: every filter must have the same size and channels")
    return np.stack(filters, axis=-1)


def parse_bias(text: str) -> np.ndarray:
    try:
        return np.array([float(v) for v in re.split(r"[,\s]+", text.strip()) if v], dtype=np.float32)
    except ValueError:
        raise ConfigError(f"--bias must be numbers separated by commas; received {text!r}") from None


# --------------------------------------------------------------------------- model and weights
def _is_kernel(name: str) -> bool:
    return name == "kernel" or name.endswith("_kernel")


def build_for_values(model_or_spec: str, in_shape: tuple):
    """A spec (``"conv3-1"``), a registered model or a ``.keras`` file -> (Keras model for ``in_shape``,
    whether kerascnn built it). Layers that stock Keras cannot build exactly (a convolution with stride
    > 1 and dilation > 1) are built as their exact equivalents (``kerascnn.exact_layers``)."""
    from kerascnn.errors import GeometryError
    from kerascnn.registry import model_ref
    from kerascnn.rules.base import exact_windows

    if model_or_spec.endswith(".keras"):
        import keras

        if not Path(model_or_spec).is_file():
            raise ConfigError(f"no such model file: {model_or_spec}")
        try:
            model = keras.models.load_model(model_or_spec, compile=False)
        except Exception as e:  # noqa: BLE001 - a corrupt or foreign file
            raise DataError(f"cannot load {model_or_spec}: {e.__class__.__name__}: {first_line(e, 200, '')}") from None
        want = tuple(model.input_shape[1:])
        if len(want) == 1 and len(in_shape) == 3 and in_shape[0] == in_shape[2] == 1:
            in_shape = (in_shape[1],)  # one row: the vector a dense model takes
        if len(want) != len(in_shape) or any(w is not None and w != g for w, g in zip(want, in_shape)):
            raise ConfigError(f"{model_or_spec} takes inputs of shape {want}; --input has shape {in_shape}")
        return model, False
    if len(in_shape) != 3:
        raise ConfigError(f"a layer spec needs an (H, W) or (H, W, C) input; received shape {in_shape}")
    # a size that collapses: one GeometryError naming the layer, before Keras builds anything
    ref = model_ref(model_or_spec, None, in_shape, spec=True)
    try:
        ref.analyze()
    except GeometryError as e:
        if in_shape[0] == 1:
            raise GeometryError(f"{e}; a one-row input is a 1-D signal: give kernels and pools as 1xF "
                                f"(conv1x3-1, maxpool1x2)") from None
        raise
    with exact_windows():
        return ref.build(), True


def set_weights(model, kernel=None, bias=None, weights=None, ones=True) -> list:
    """Fill the model's weights (see the module docstring); returns notes on what was set."""
    from kerascnn.layers import flat_layers

    notes = []
    layers = [l for l in flat_layers(model) if l.weights]
    target = None
    if kernel is not None or bias is not None:
        target = next((l for l in layers if any(_is_kernel(v.path.rsplit("/", 1)[-1]) for v in l.weights)), None)
        if target is None:
            raise ConfigError("--kernel/--bias need a layer with a kernel (conv or dense) in the model")
    if ones:
        for layer in layers:
            for v in layer.weights:
                leaf = v.path.rsplit("/", 1)[-1]
                if _is_kernel(leaf):
                    v.assign(np.ones(v.shape, np.float32))
                elif leaf == "bias":
                    v.assign(np.zeros(v.shape, np.float32))
        if [l for l in layers if l is not target]:
            notes.append("kernels all ones, biases zero" if target is None else
                         "other kernels all ones, biases zero")
    if weights is not None:
        notes.append(_load_weights(model, layers, weights))
    if target is not None:
        if bias is None and ones:
            notes.append(f"{target.name}: bias zero")
        for arr, what in ((kernel, "kernel"), (bias, "bias")):
            if arr is None:
                continue
            var = next((v for v in target.weights if v.path.rsplit("/", 1)[-1] == what
                        or what == "kernel" and _is_kernel(v.path.rsplit("/", 1)[-1])), None)
            if var is None:
                raise ConfigError(f"layer {target.name} has no {what} (built without bias? drop 'nb')")
            if what == "kernel" and "Conv2DTranspose" in type(target).__name__ and arr.ndim == 4:
                arr = arr.transpose(0, 1, 3, 2)  # given as (F, F, C_in, K); Keras keeps (F, F, K, C_in)
            arr = _fit(arr, tuple(var.shape), what, target.name)
            var.assign(arr)
        notes.insert(0, f"{target.name}: the given " + " and ".join(
            w for w, a in (("kernel", kernel), ("bias", bias)) if a is not None))
    return notes


def _fit(arr, shape, what, layer):
    if arr.shape == shape:
        return arr
    if what == "bias" and arr.size == 1:
        return np.full(shape, float(arr.reshape(-1)[0]), np.float32)
    if what == "kernel" and len(shape) == 2 and arr.ndim == 4 and arr.shape[:2] == (1, 1):
        arr = arr[0, 0]  # a dense kernel written as one row: (1, 1, in, out) -> (in, out)
    if arr.shape != shape:
        raise ConfigError(f"--{what} has shape {arr.shape}; layer {layer} needs {shape} "
                          f"(F_h, F_w, C_in, K for a conv kernel: channels '|', filters '/')")
    return arr


def _load_weights(model, layers, path: str) -> str:
    if path.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as z:
                given = {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:
            raise DataError(f"--weights: cannot read {path}: {e}") from None
        used = set()
        for layer in layers:
            for v in layer.weights:
                key = f"{layer.name}/{v.path.rsplit('/', 1)[-1]}"
                if key in given:
                    if tuple(given[key].shape) != tuple(v.shape):
                        raise ConfigError(f"--weights {key} has shape {given[key].shape}; "
                                          f"the layer needs {tuple(v.shape)}")
                    v.assign(given[key].astype(np.float32))
                    used.add(key)
        unused = sorted(set(given) - used)
        if unused:
            raise ConfigError(f"--weights: no layer weight named {unused[0]!r}; expected keys like "
                              f"{', '.join(_keys(layers)[:3])}")
        return f"{len(used)} arrays from {Path(path).name}"
    if path.endswith(".keras"):
        import keras

        from kerascnn.layers import flat_layers

        src = keras.models.load_model(path, compile=False)
        by_name = {l.name: l for l in flat_layers(src)}
        n = 0
        for layer in layers:
            other = by_name.get(layer.name)
            if other is None:
                continue
            if [tuple(w.shape) for w in other.weights] != [tuple(w.shape) for w in layer.weights]:
                raise ConfigError(f"--weights: layer {layer.name} of {path} has other weight shapes")
            layer.set_weights(other.get_weights())
            n += 1
        if not n:
            raise ConfigError(f"--weights: {path} has no layer named like this model's "
                              f"({', '.join(l.name for l in layers[:3])})")
        return f"{n} layers from {Path(path).name}"
    raise ConfigError(f"--weights must be a .npz or .keras file; received {path!r}")


def _keys(layers) -> list:
    return [f"{l.name}/{v.path.rsplit('/', 1)[-1]}" for l in layers for v in l.weights]


def run_values(model_or_spec: str, x: np.ndarray, kernel=None, bias=None, weights=None, each_layer=False):
    """-> (``LayerValues``: one ``LayerOutput(name, cls, values)`` per layer shown, values without the
    batch axis; notes on the weights). Both render as HTML tables in Jupyter."""
    import keras

    model, ours = build_for_values(model_or_spec, tuple(x.shape))
    if len(model.inputs[0].shape) == 2 and x.ndim == 3:
        x = x.reshape(-1)  # one row, for a model that takes a vector
    notes = set_weights(model, kernel, bias, weights, ones=ours)
    layers = model.layers if each_layer else model.layers[-1:]
    if each_layer and len(model.layers) > 1:
        probe = keras.Model(model.inputs[0], [l.output for l in model.layers])
        outs = probe(x[None], training=False)
    else:
        outs = [model(x[None], training=False)]
    return LayerValues([LayerOutput(l.name, l.__class__.__name__, np.asarray(o)[0]) for l, o in zip(layers, outs)],
                       x.shape, notes), notes


class LayerOutput(NamedTuple):
    """One layer's output on the input: ``(name, cls, values)``."""

    name: str
    cls: str
    values: np.ndarray

    def __str__(self) -> str:
        return format_output(self.name, self.cls, self.values)

    def _repr_html_(self) -> str:
        return html_output(self.name, self.cls, self.values)


class LayerValues(list):
    """The outputs ``kerascnn values`` prints, layer by layer (a list of ``LayerOutput``)."""

    def __init__(self, outputs, input_shape=(), notes=()):
        super().__init__(outputs)
        self.input_shape, self.notes = tuple(input_shape), list(notes)

    def __str__(self) -> str:
        head = f"Input {'x'.join(map(str, self.input_shape))}" + (f"; {'; '.join(self.notes)}" if self.notes else "")
        return "\n".join([head] + [str(o) for o in self])

    def _repr_html_(self) -> str:
        from html import escape

        head = escape(f"Input {'x'.join(map(str, self.input_shape))}" + (f"; {'; '.join(self.notes)}"
                                                                         if self.notes else ""))
        return f"<p>{head}</p>" + "".join(o._repr_html_() for o in self)


# --------------------------------------------------------------------------- printing
def _fmt(v: np.ndarray) -> list:
    if np.all(np.isfinite(v)) and np.all(v == np.round(v)) and np.all(np.abs(v) < 1e15):
        return [str(int(a)) for a in v.reshape(-1)]
    return [f"{a:.6g}" for a in v.reshape(-1)]


def format_grid(a: np.ndarray) -> str:
    """A 2-D array as right-aligned rows."""
    a = np.atleast_2d(a)
    cells = np.array(_fmt(a), dtype=object).reshape(a.shape)
    width = max(len(c) for c in cells.reshape(-1))
    return "\n".join("  ".join(c.rjust(width) for c in row) for row in cells)


def format_output(name: str, cls: str, y: np.ndarray) -> str:
    shape = "x".join(map(str, y.shape))
    if y.ndim == 3:
        parts = [f"{name} ({cls}) output {shape}:"]
        for c in range(y.shape[-1]):
            parts.append(f"channel {c}:" if y.shape[-1] > 1 else "")
            parts.append(format_grid(y[..., c]))
        return "\n".join(p for p in parts if p)
    return f"{name} ({cls}) output {shape}:\n{format_grid(y.reshape(1, -1))}"


def html_output(name: str, cls: str, y: np.ndarray) -> str:
    """``format_output`` as HTML: one table per channel (what Jupyter shows for a value grid)."""
    from html import escape

    from kerascnn.report import html_table

    shape = "x".join(map(str, y.shape))
    grids = [y[..., c] for c in range(y.shape[-1])] if y.ndim == 3 else [y.reshape(1, -1)]
    parts = [f"<p><b>{escape(name)}</b> ({escape(cls)}) output {shape}:</p>"]
    for c, g in enumerate(grids):
        if len(grids) > 1:
            parts.append(f"<p>channel {c}:</p>")
        cells = np.array(_fmt(np.atleast_2d(g)), dtype=object).reshape(np.atleast_2d(g).shape)
        parts.append(html_table(None, cells.tolist(), "r" * cells.shape[1]))
    return "".join(parts)


def as_lists(y: np.ndarray):
    """(H, W, C) -> per-channel nested lists; vectors as a list."""
    if y.ndim == 3:
        return [y[..., c].tolist() for c in range(y.shape[-1])]
    return y.tolist()
