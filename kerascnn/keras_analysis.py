"""The lecture arithmetic for any Keras model: Sequential or functional, with branches, merges
(``Add``, ``Concatenate``, ``Multiply`` ...) and nested models.

Each Keras layer is mapped to a spec (``Conv2D`` -> ``Conv``, ``DepthwiseConv2D`` ->
``DepthwiseConv``, ``ZeroPadding2D`` -> ``ZeroPad`` ...) and its row comes from that spec's rule
(``kerascnn.rules``): parameters, multiply-adds, receptive field and jump. Layers that only act
element by element (activations, dropout, ``Rescaling``), reshape, or merge are passed through
with their own arithmetic; ``Normalization`` counts its mean, variance and count (2C + 1,
non-trainable). Receptive field and jump propagate along the graph; at a merge they are the
largest over the inputs. A layer none of this covers is listed by name and class in
``Report.unknown`` (its parameters are not counted, never guessed).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from kerascnn import specs as S
from kerascnn.analysis import LayerStats, Report, _hw, _State, walk
from kerascnn.errors import ConfigError

ELEMENTWISE = {"Activation", "ReLU", "LeakyReLU", "ELU", "Softmax", "ThresholdedReLU", "Dropout",
               "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
               "GaussianDropout", "AlphaDropout", "Identity", "ActivityRegularization", "Rescaling",
               "Normalization", "ImagenetPreprocess"}
RESHAPING = {"Reshape", "Permute"}
MERGES = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate",
          "Divide"}  # Divide/Subtract...: also keras.ops operations in functional graphs


def _padding(layer, in_shape, kernel, strides, dilation=(1, 1)):
    """Keras's padding as the lecture's explicit ((top, bottom), (left, right)).

    Keras's "same" pads max((ceil(W/S) - 1) S + F_eff - W, 0) in all, the smaller half before
    (TensorFlow's rule): for stride 2 on an even input that is (0, 1), not P on both sides.
    """
    if layer.padding != "same":
        return 0
    out = []
    for w, f, s, d in zip(in_shape[:2], kernel, strides, dilation):
        f_eff = 1 + d * (f - 1)
        total = max((-(-w // s) - 1) * s + f_eff - w, 0)
        out.append((total // 2, total - total // 2))
    return tuple(out)


def to_spec(layer, in_shape=(1, 1, 1)):
    """The spec of a Keras layer (``in_shape``: its input, H, W, C), or None when no rule covers it."""
    cls = type(layer).__name__
    own = getattr(layer, "spec", None)  # kerascnn's own blocks (Inception, residual) carry their spec
    if isinstance(own, S.Spec):
        return own
    cfg = layer.get_config() if hasattr(layer, "get_config") else {}
    if cfg.get("data_format", "channels_last") != "channels_last":
        return None
    name = layer.name
    if cls == "Conv2D":
        return S.Conv(layer.filters, tuple(layer.kernel_size), tuple(layer.strides),
                      _padding(layer, in_shape, layer.kernel_size, layer.strides, layer.dilation_rate),
                      use_bias=layer.use_bias, groups=layer.groups, dilation=tuple(layer.dilation_rate), name=name)
    if cls == "DepthwiseConv2D":
        return S.DepthwiseConv(tuple(layer.kernel_size), tuple(layer.strides),
                               _padding(layer, in_shape, layer.kernel_size, layer.strides, layer.dilation_rate),
                               depth_multiplier=layer.depth_multiplier, dilation=tuple(layer.dilation_rate),
                               use_bias=layer.use_bias, name=name)
    if cls == "SeparableConv2D":
        return S.SeparableConv(layer.filters, tuple(layer.kernel_size), tuple(layer.strides),
                               _padding(layer, in_shape, layer.kernel_size, layer.strides, layer.dilation_rate),
                               depth_multiplier=layer.depth_multiplier,
                               dilation=tuple(layer.dilation_rate), use_bias=layer.use_bias, name=name)
    if cls in ("MaxPooling2D", "AveragePooling2D"):
        return S.Pool("max" if cls.startswith("Max") else "avg", tuple(layer.pool_size), tuple(layer.strides),
                      _padding(layer, in_shape, layer.pool_size, layer.strides), name=name)
    if cls in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        return S.GlobalPool("avg" if "Average" in cls else "max", name=name)
    if cls in ("ZeroPadding2D", "NegInfPadding2D"):  # the geometry of padding, whatever it pads with
        return S.ZeroPad(tuple(tuple(int(v) for v in p) for p in layer.padding), name=name)
    if cls == "Flatten":
        return S.Flatten(name=name)
    if cls == "Dense":
        return S.Dense(layer.units, use_bias=layer.use_bias, name=name)
    if cls == "BatchNormalization" and layer.center and layer.scale and _last_axis(layer.axis):
        return S.BatchNorm(name=name)
    if cls == "LayerNormalization" and layer.center and layer.scale and _last_axis(layer.axis):
        return S.LayerNorm(name=name)
    if cls == "GroupNormalization" and layer.center and layer.scale and _last_axis(layer.axis):
        return S.GroupNorm(layer.groups, name=name)
    if cls in ("Dropout", "SpatialDropout2D"):
        return (S.Dropout if cls == "Dropout" else S.SpatialDropout)(layer.rate, name=name)
    return None


def _last_axis(axis) -> bool:
    axis = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    return len(axis) == 1 and axis[0] in (-1, 3)


def _shape(t) -> tuple:
    return tuple(int(v) if v is not None else -1 for v in t.shape[1:])


def _keras_params(layer, seen: set) -> tuple:
    """(total, trainable) of Keras's own weights, counted once per layer object."""
    if id(layer) in seen or not hasattr(layer, "weights"):
        return 0, 0
    seen.add(id(layer))
    total = sum(math.prod(w.shape) for w in layer.weights)
    trainable = sum(math.prod(w.shape) for w in layer.trainable_weights)
    return int(total), int(trainable)


class _Walker:
    def __init__(self, bpe: int):
        self.bpe = bpe
        self.seen: set = set()        # layers whose parameters are already counted (shared layers)
        self.unknown: list = []       # (name, class) not analysed
        self.keras_counts: dict = {}  # layer name -> Keras count_params()
        self.calls: dict = {}         # id(layer) -> times called so far (shared layers)

    # ---- one layer
    def layer(self, layer, ins: list, out_shapes: list):
        cls = type(layer).__name__
        import keras

        if isinstance(layer, keras.Model):  # a nested model: one row, its layers as children
            first = id(layer) not in self.seen
            if first:
                self.keras_counts[layer.name] = int(layer.count_params())
            children, outs = self.model(layer, ins)
            self.seen.add(id(layer))
            shape = outs[0].shape
            row = LayerStats(layer.name, cls, tuple(shape), sum(c.params for c in children),
                             sum(c.trainable_params for c in children), sum(c.macs for c in children),
                             _f(outs[0].rf), _f(outs[0].jump), math.prod(shape) * self.bpe, "", children)
            return row, outs
        out_shape = out_shapes[0] if out_shapes else ins[0].shape
        first = id(layer) not in self.seen
        k_total, k_train = _keras_params(layer, self.seen)
        known = to_spec(layer) is not None or cls in MERGES or cls in ELEMENTWISE or cls in RESHAPING
        if first and known:  # a layer without a rule gets no Keras column: its count is in the footer
            self.keras_counts[layer.name] = k_total
        st = ins[0]
        spec = to_spec(layer, st.shape if len(st.shape) == 3 else (1, 1, 1))
        note = ""
        if spec is not None and len(ins) == 1:
            from kerascnn.analysis import analyze_spec

            lost = st.rf is None  # the field was lost upstream (a layer without a rule)
            row, new = analyze_spec(spec, _State(st.shape) if lost else st, self.bpe)
            if lost:
                row.receptive_field = row.jump = "?"
                new = _State(new.shape, None, None, st.start)
            if not first:  # a shared layer called again: its weights are counted once, its work each time
                self.calls[id(layer)] = self.calls.get(id(layer), 1) + 1
                row.params = row.trainable_params = 0
                row.name = f"{layer.name} (call {self.calls[id(layer)]})"
            if tuple(row.output_shape) != tuple(out_shape):  # e.g. GlobalAveragePooling2D(keepdims=True)
                row.output_shape = tuple(out_shape)
                row.activation_bytes = math.prod(out_shape) * self.bpe
            row.cls = cls
            return row, [_State(tuple(out_shape), new.rf, new.jump, new.start)]
        if cls in MERGES or (cls in ELEMENTWISE or cls in RESHAPING) and len(ins) >= 1:
            if any(s.rf is None for s in ins):
                rf = jump = None
            else:
                rf = tuple(max(s.rf[i] for s in ins) for i in (0, 1))
                jump = tuple(max(s.jump[i] for s in ins) for i in (0, 1))
            params = trainable = 0
            if cls == "Normalization" and first and layer.weights:
                # mean + variance per normalized channel + the sample count: non-trainable state
                # (none when mean and variance are given as constants)
                axes = [a if a >= 0 else len(st.shape) + 1 + a for a in
                        (layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis])]
                params = 2 * math.prod(st.shape[a - 1] for a in axes) + 1
            elif k_total:  # e.g. PReLU-like weights in an "element-wise" class: do not guess
                self.unknown.append((layer.name, cls))
                note = "not analysed (has weights)"
            row = LayerStats(layer.name, cls, tuple(out_shape), params, trainable, 0, _f(rf), _f(jump),
                             math.prod(out_shape) * self.bpe, note)
            return row, [_State(tuple(s), rf, jump, ins[0].start) for s in (out_shapes or [out_shape])]
        self.unknown.append((layer.name, cls))
        row = LayerStats(layer.name, cls, tuple(out_shape), 0, 0, 0, "?", "?",
                         math.prod(out_shape) * self.bpe, "not analysed: no rule for this layer")
        return row, [_State(tuple(s), None, None, st.start) for s in (out_shapes or [out_shape])]

    # ---- a whole model (top level or nested)
    def model(self, model, ins: list):
        import keras

        rows = []
        if isinstance(model, keras.Sequential):
            sts = ins
            for layer in model.layers:
                row, sts = self.layer(layer, sts, [_shape(layer.output)] if _has_output(layer) else [])
                rows.append(row)
            outs = sts
        else:
            states = {id(t): s for t, s in zip(model.inputs, ins)}
            for depth in sorted(model._nodes_by_depth, reverse=True):
                for node in model._nodes_by_depth[depth]:
                    op = node.operation
                    if isinstance(op, keras.layers.InputLayer):
                        continue
                    node_ins = [states[id(t)] for t in node.input_tensors]
                    row, node_outs = self.layer(op, node_ins, [_shape(t) for t in node.output_tensors])
                    for t, s in zip(node.output_tensors, node_outs):
                        states[id(t)] = s
                    rows.append(row)
            outs = [states[id(t)] for t in model.outputs]
        return rows, outs


def _f(v):
    """Receptive field / jump for a row: '?' once a layer without a rule has lost it."""
    return "?" if v is None else _hw(v)


def _has_output(layer) -> bool:
    try:
        layer.output
        return True
    except (AttributeError, ValueError):
        return False


def analyze_keras(model, bytes_per_element: int = 4) -> Report:
    """Per-layer lecture arithmetic for a built Keras model (one image; batch axis dropped)."""
    import keras

    if not isinstance(model, keras.Model):
        raise ConfigError(f"expected a keras.Model; received {type(model).__name__}")
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise ConfigError(f"model {model.name!r} is not built: give it an Input (or call it once) first")
    if len(inputs) != 1:
        raise ConfigError(f"model {model.name!r} has {len(inputs)} inputs; kerascnn analyses one-input models")
    in_shape = _shape(inputs[0])
    if -1 in in_shape:
        raise ConfigError(f"model {model.name!r} has an input of unknown size {in_shape}; build it with a fixed "
                          "input shape, e.g. input_shape=(224, 224, 3)")
    walker = _Walker(bytes_per_element)
    rows, _ = walker.model(model, [_State(in_shape)])
    return KerasReport(in_shape, rows, bytes_per_element, name=model.name, unknown=walker.unknown,
                       keras_counts=walker.keras_counts, keras_total=int(model.count_params()))


@dataclass
class KerasReport(Report):
    """A ``Report`` for a Keras model: also the layers not analysed and Keras's own counts.
    ``print(report)`` shows the summary table."""

    name: str = "model"
    unknown: list = field(default_factory=list)        # (layer name, class) without a rule
    keras_counts: dict = field(default_factory=dict)   # layer name -> Keras count_params()
    keras_total: int = 0

    @property
    def keras_agrees(self) -> bool:
        """Keras's count_params() equals the arithmetic on every analysed layer."""
        return (all(self.keras_counts.get(l.name, l.params) == l.params for l in walk(self.layers)))

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["model"] = self.name
        d["not_analysed"] = [{"name": n, "class": c} for n, c in self.unknown]
        d["keras"] = {"total_params": self.keras_total, "layers_match": self.keras_agrees}
        return d

    def __str__(self) -> str:
        from kerascnn.report import render

        return render(self, self.keras_counts, depth=2, title=f"Lecture arithmetic for {self.name}")


def load_keras_model(path: str):
    """Load a ``.keras``/``.h5`` file for analysis (no compile, safe mode: Lambda code is refused)."""
    from pathlib import Path

    import keras

    from kerascnn.errors import DataError

    if not Path(path).is_file():
        raise ConfigError(f"no such model file: {path}")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001 - foreign, corrupt, or code-carrying files
        raise DataError(f"cannot load {path}: {e.__class__.__name__}: {str(e).splitlines()[0][:200]}") from None
