"""The lecture arithmetic for any Keras model: Sequential or functional, with branches, merges
(``Add``, ``Concatenate``, ``Multiply`` ...), nested models and shared layers.

The walk reads the model's *config* (the dict ``keras.saving.serialize_keras_object`` gives, which is
``config.json`` inside a ``.keras`` zip), so a saved file is analysed in pure Python, without
TensorFlow and without its weights (``analyze_file``); ``analyze_keras(model)`` serializes a built
model and walks the same dict. Each layer config is mapped to a spec (``Conv2D`` -> ``Conv``,
``Conv2DTranspose`` -> ``ConvTranspose``, ``Cropping2D`` -> ``Crop`` ...) and its row comes from that
spec's rule (``kerascnn.rules``): output shape, parameters, multiply-adds, receptive field and jump.
Element-wise layers (activations, dropout), merges (at a merge the receptive field and jump are the
largest over the inputs) and ``Reshape``/``Permute`` have their own short arithmetic here.

A layer none of this covers is listed by name and class in ``Report.unknown``; its parameters are
Keras's own ``count_params()`` (so the totals always equal Keras's), which needs the model built by
Keras: ``analyze_file`` then builds it from the config (no weights read). The receptive field after
such a layer shows ``?``: it is never guessed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from kerascnn import keras_config as KC
from kerascnn.analysis import LayerStats, Report, _field_row, _State, walk
from kerascnn.errors import ConfigError, first_line
from kerascnn.keras_config import to_spec

ELEMENTWISE = {"Activation", "ReLU", "LeakyReLU", "ELU", "Softmax", "ThresholdedReLU", "Dropout",
               "SpatialDropout1D", "SpatialDropout3D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
               "Identity", "ActivityRegularization", "ImagenetPreprocess"}
MERGES = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Divide",
          "CustomScaleLayer"}  # CustomScaleLayer: keras.applications' InceptionResNetV2, x + scale * r
OPS_ELEMENTWISE = {"Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Maximum", "Minimum", "Power",
                   "Relu", "Relu6", "Sigmoid", "HardSigmoid", "Silu", "HardSilu", "Gelu", "Tanh", "Exp", "Abs",
                   "Negative", "Square", "Sqrt", "Softplus", "LeakyRelu", "Elu", "Selu", "Cast", "Clip"}
RESHAPING = {"Reshape", "Permute"}


class NeedsKeras(ConfigError):
    """A layer without a rule: its parameters and output shape need the model built by Keras."""


# --------------------------------------------------------------------------- shapes without a rule
def _broadcast(shapes: list) -> tuple:
    n = max(len(s) for s in shapes)
    out = []
    for dims in zip(*[(1,) * (n - len(s)) + tuple(s) for s in shapes]):
        big = {d for d in dims if d != 1}
        if len(big) > 1:
            raise ConfigError(f"shapes {shapes} do not broadcast")
        out.append(big.pop() if big else 1)
    return tuple(out)


def _concat(shapes: list, axis: int) -> tuple:
    n = len(shapes[0])
    a = axis if axis >= 0 else n + 1 + axis  # Keras's axis counts the batch
    a -= 1
    out = list(shapes[0])
    out[a] = sum(s[a] for s in shapes)
    return tuple(out)


def _reshape(in_shape: tuple, target) -> tuple:
    target = [int(t) for t in target]
    if -1 in target:
        known = math.prod(t for t in target if t != -1)
        target[target.index(-1)] = math.prod(in_shape) // known
    if math.prod(target) != math.prod(in_shape):
        raise ConfigError(f"cannot reshape {in_shape} to {tuple(target)}")
    return tuple(target)


def _keeps_field(in_shape: tuple, out_shape: tuple) -> bool:
    """A reshape keeps the field when only the channel axis changes, or to/from a vector or a 1x1 map."""
    flat = [s for s in (in_shape, out_shape) if len(s) != 3 or s[:2] == (1, 1)]
    return (len(in_shape) == len(out_shape) == 3 and in_shape[:2] == out_shape[:2]) or len(flat) == 2


# --------------------------------------------------------------------------- the walk
def _name(layer_cfg: dict) -> str:
    return layer_cfg.get("name") or layer_cfg.get("config", {}).get("name")


@dataclass
class _Keras:
    """What Keras knows about one layer without a rule: (total, trainable) and output shapes."""

    params: tuple
    output_shapes: list


class _Walker:
    def __init__(self, bpe: int, keras_model=None):
        self.bpe = bpe
        self.keras_model = keras_model
        self.unknown: list = []       # (name, class) not analysed
        self.calls: dict = {}         # layer path -> times called so far (shared layers)
        self.check_saved = False      # compare with the tensor shapes the config recorded (same input size)
        self.mismatches: list = []    # (tensor, recorded shape, computed shape): none expected

    # ---- Keras's view of one layer without a rule (the model built by Keras)
    def _keras(self, path: tuple, in_shapes: list, lname: str, cls: str) -> _Keras:
        layer = self._keras_layer(path)
        if layer is None:
            raise NeedsKeras(f"layer {lname!r} ({cls}) has no rule: its parameters need the model built by Keras")
        import numpy as np

        total = int(layer.count_params()) if layer.built else 0
        trainable = int(sum(np.prod(w.shape) for w in layer.trainable_weights))
        try:
            arg = [(None, *s) for s in in_shapes] if len(in_shapes) > 1 else (None, *in_shapes[0])
            out = layer.compute_output_shape(arg)
        except Exception:  # noqa: BLE001 - a layer that cannot say: its own output tensor
            out = layer.output.shape
        outs = out if isinstance(out, list) else [out]
        return _Keras((total, trainable), [tuple(-1 if d is None else int(d) for d in o[1:]) for o in outs])

    def _keras_layer(self, path: tuple):
        obj = self.keras_model
        for name in path:
            if obj is None or not hasattr(obj, "get_layer"):
                return None
            try:
                obj = obj.get_layer(name)
            except ValueError:
                return None
        return obj

    # ---- one call of one layer
    def layer(self, layer_cfg: dict, ins: list, path: tuple, frozen: bool):
        cls, lname = layer_cfg.get("class_name"), _name(layer_cfg)
        key = path + (lname,)
        first = key not in self.calls
        self.calls[key] = self.calls.get(key, 0) + 1
        frozen = frozen or layer_cfg.get("config", {}).get("trainable") is False
        if KC.is_model(layer_cfg):
            children, outs = self.model(layer_cfg, ins, key, frozen)
            row = LayerStats(lname, cls, outs[0].shape, sum(c.params for c in children) if first else 0,
                             sum(c.trainable_params for c in children) if first else 0,
                             sum(c.macs for c in children), *_f(outs[0].rf, outs[0].jump),
                             math.prod(outs[0].shape) * self.bpe, "", children)
            return self._called(row, first, key), outs
        st = ins[0]
        spec = to_spec(layer_cfg, st.shape) if len(ins) == 1 else None
        if spec is not None:
            row, outs = self._spec_row(spec, st, layer_cfg)
        elif cls in MERGES or _is_op(layer_cfg, OPS_ELEMENTWISE) or cls in ELEMENTWISE or cls in RESHAPING:
            row, outs = self._passive_row(layer_cfg, cls, lname, ins)
        else:
            row, outs = self._unknown_row(cls, lname, ins, key)
        if frozen:
            row.trainable_params = 0
        return self._called(row, first, key), outs

    def _called(self, row, first, key):
        if not first:  # a shared layer called again: its weights are counted once, its work each time
            row.params = row.trainable_params = 0
            row.name = f"{row.name} (call {self.calls[key]})"
        return row

    def _spec_row(self, spec, st: _State, layer_cfg: dict):
        from kerascnn.analysis import analyze_spec

        lost = st.rf is None  # the field was lost upstream (a layer without a rule)
        row, new = analyze_spec(spec, _State(st.shape) if lost else st, self.bpe)
        row.cls = layer_cfg.get("class_name")
        if lost:
            row.receptive_field = row.jump = "?"
            new = _State(new.shape, None, None, st.start)
        if spec.keras_class.startswith("Global") and layer_cfg.get("config", {}).get("keepdims"):
            new = _State((1, 1) + tuple(new.shape), new.rf, new.jump, new.start)
            row.output_shape, row.activation_bytes = new.shape, math.prod(new.shape) * self.bpe
        return row, [new]

    def _passive_row(self, layer_cfg: dict, cls: str, lname: str, ins: list):
        """Merges, element-wise layers and ops, reshapes: no parameters, no multiply-adds."""
        c = layer_cfg.get("config", {})
        shapes = [s.shape for s in ins]
        if cls == "Concatenate":
            shape = _concat(shapes, int(c.get("axis", -1)))
        elif cls in MERGES or _is_op(layer_cfg, OPS_ELEMENTWISE):
            shape = _broadcast(shapes)
        elif cls == "Reshape":
            shape = _reshape(shapes[0], c["target_shape"])
        elif cls == "Permute":
            dims = [int(d) for d in c["dims"]]
            shape = tuple(shapes[0][d - 1] for d in dims)
        else:
            shape = shapes[0]
        rf = jump = None
        if all(s.rf is not None for s in ins):
            rf = tuple(max(s.rf[i] for s in ins) for i in (0, 1))
            jump = tuple(max(s.jump[i] for s in ins) for i in (0, 1))
            if cls == "Permute" and [int(d) for d in c["dims"]][:2] == [2, 1]:
                rf, jump = rf[::-1], jump[::-1]
            elif cls in RESHAPING and not (_keeps_field(shapes[0], shape) or
                                           (cls == "Permute" and [int(d) for d in c["dims"]][:2] == [1, 2])):
                rf = jump = None
        row = LayerStats(lname, cls, shape, 0, 0, 0, *_f(rf, jump), math.prod(shape) * self.bpe)
        return row, [_State(shape, rf, jump, ins[0].start)]

    def _unknown_row(self, cls, lname, ins, key):
        k = self._keras(key[:-1] + (lname,), [s.shape for s in ins], lname, cls)
        self.unknown.append((lname, cls))
        total, trainable = k.params
        shape = k.output_shapes[0]
        row = LayerStats(lname, cls, shape, total, trainable, 0, "?", "?",
                         math.prod(max(d, 0) for d in shape) * self.bpe,
                         "not analysed: no rule for this layer (params: Keras's count_params(); MACs not counted)")
        return row, [_State(tuple(s), None, None, ins[0].start) for s in k.output_shapes]

    # ---- a whole model (top level or nested)
    def model(self, model_cfg: dict, ins: list, path: tuple = (), frozen: bool = False):
        frozen = frozen or model_cfg.get("config", {}).get("trainable") is False
        layers = KC.layers_of(model_cfg)
        rows = []
        if model_cfg["class_name"] == "Sequential":
            sts = ins
            for layer_cfg in layers:
                if layer_cfg.get("class_name") == "InputLayer":
                    continue
                row, sts = self.layer(layer_cfg, sts, path, frozen)
                rows.append(row)
            return rows, sts
        tensors = {}
        for (name, k, i), st in zip(KC.input_refs(model_cfg), ins):
            tensors[(name, k, i)] = st
        todo = [(lay, k, node) for lay in layers if lay.get("class_name") != "InputLayer"
                for k, node in enumerate(lay.get("inbound_nodes") or [])]
        while todo:
            left = []
            for lay, k, node in todo:
                refs = KC.node_inputs(node)
                if not all(r[:3] in tensors for r in refs):
                    left.append((lay, k, node))
                    continue
                if self.check_saved:
                    for r in refs:
                        got = tuple(tensors[r[:3]].shape)
                        if r[3] and None not in r[3][1:] and tuple(r[3][1:]) != got:
                            self.mismatches.append((path + (r[0],), tuple(r[3][1:]), got))
                row, outs = self.layer(lay, [tensors[r[:3]] for r in refs], path, frozen)
                for i, st in enumerate(outs):
                    tensors[(_name(lay), k, i)] = st
                rows.append(row)
            if len(left) == len(todo):
                missing = next(r for r in KC.node_inputs(left[0][2]) if r[:3] not in tensors)
                raise ConfigError(f"layer {_name(left[0][0])!r} reads {missing[0]!r}, which no layer of the "
                                  f"model computes")
            todo = left
        return rows, [tensors[r] for r in KC.output_refs(model_cfg)]


def _is_op(layer_cfg: dict, names: set) -> bool:
    """A ``keras.ops`` operation in a functional graph (``x + y`` is serialized as module
    ``keras.src.ops.numpy``, class ``Add``)."""
    return str(layer_cfg.get("module", "")).startswith("keras.src.ops") and layer_cfg.get("class_name") in names


def _f(rf, jump):
    """Receptive field / jump for a row: '?' once a layer without a rule has lost it."""
    return ("?", "?") if rf is None else _field_row(rf, jump)


# --------------------------------------------------------------------------- entry points
def analyze_config(model_cfg: dict, input_shape=None, keras_model=None, bytes_per_element: int = 4,
                   keras_counts=None, keras_total=None) -> "KerasReport":
    """Walk a model config (``config.json`` of a ``.keras`` file, or ``serialize_keras_object(model)``)
    at ``input_shape`` (default: the model's own). ``keras_model``: the model built by Keras at that
    size, needed only for layers without a rule (else ``NeedsKeras`` is raised)."""
    name = model_cfg.get("config", {}).get("name", "model")
    saved = KC.input_shape(model_cfg)
    if saved is None and KC.input_refs(model_cfg) and len(KC.input_refs(model_cfg)) != 1:
        raise ConfigError(f"model {name!r} has {len(KC.input_refs(model_cfg))} inputs; kerascnn analyses "
                          f"one-input models")
    shape = tuple(input_shape) if input_shape is not None else saved
    if shape is None:
        raise ConfigError(f"model {name!r} is not built: give it an Input (or call it once) first")
    if len(shape) not in (1, 3) or any(v is None or v < 1 for v in shape):
        if input_shape is None and len(shape) == 3 and shape[2] is not None:
            raise ConfigError(f"model {name!r} has an input of unknown size {_shown(shape)}: give one, e.g. "
                              f"--input-shape 224,224,{shape[2]} (Python: input_shape=(224, 224, {shape[2]}))")
        raise ConfigError(f"model {name!r}: kerascnn analyses inputs of shape H, W, C (or a vector); "
                          f"received {_shown(shape)}")
    if input_shape is not None and saved is not None and len(saved) == 3 and saved[2] not in (None, shape[2]):
        raise ConfigError(f"model {name!r} takes {saved[2]} input channels; --input-shape gives {shape[2]}")
    walker = _Walker(bytes_per_element, keras_model)
    walker.check_saved = saved is not None and tuple(shape) == tuple(saved)
    rows, _ = walker.model(model_cfg, [_State(tuple(int(v) for v in shape))])
    return KerasReport(tuple(int(v) for v in shape), rows, bytes_per_element, name=name, unknown=walker.unknown,
                       keras_counts=keras_counts, keras_total=keras_total, shape_mismatches=walker.mismatches)


def _shown(shape) -> str:
    return "x".join("?" if v is None else str(v) for v in shape)


def keras_layer_counts(model) -> dict:
    """Layer name -> Keras's ``count_params()``, nested models and kerascnn's blocks included."""
    out = {}

    def visit(m):
        for layer in m.layers:
            if type(layer).__name__ == "InputLayer":
                continue
            out.setdefault(layer.name, int(layer.count_params()) if layer.built else 0)
            for inner in getattr(layer, "inner_layers", []):
                out.setdefault(inner.name, int(inner.count_params()) if inner.built else 0)
            if hasattr(layer, "layers") and not getattr(layer, "inner_layers", None):
                visit(layer)

    visit(model)
    return out


def analyze_keras(model, bytes_per_element: int = 4) -> "KerasReport":
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
    cfg = keras.saving.serialize_keras_object(model)
    shape = tuple(inputs[0].shape[1:])
    if None in shape:
        raise ConfigError(f"model {model.name!r} has an input of unknown size {_shown(shape)}; build it with a "
                          f"fixed input shape, e.g. input_shape=(224, 224, 3)")
    return analyze_config(cfg, shape, keras_model=model, bytes_per_element=bytes_per_element,
                          keras_counts=keras_layer_counts(model), keras_total=int(model.count_params()))


def analyze_file(path: str, input_shape=None, use_keras: bool = False, bytes_per_element: int = 4):
    """A ``.keras`` file's arithmetic from its ``config.json``: pure Python, no weights read. Keras
    builds the model from the config (TensorFlow imported) only when ``use_keras`` asks for its
    side-by-side counts or a layer has no rule. Returns ``(report, keras model or None)``."""
    cfg = KC.read_config(path)
    if not use_keras:
        try:
            return analyze_config(cfg, input_shape, bytes_per_element=bytes_per_element), None
        except NeedsKeras:
            pass
    model = build_from_config(cfg, input_shape, path)
    shape = tuple(model.inputs[0].shape[1:]) if input_shape is None else tuple(input_shape)
    if None in shape:
        raise ConfigError(f"model {cfg['config'].get('name')!r} has an input of unknown size {_shown(shape)}: "
                          f"give one, e.g. --input-shape 224,224,{shape[-1]}")
    report = analyze_config(cfg, shape, keras_model=model, bytes_per_element=bytes_per_element,
                            keras_counts=keras_layer_counts(model), keras_total=int(model.count_params()))
    return report, model


def build_from_config(cfg: dict, input_shape=None, path: str = "model"):
    """The Keras model of a config (at ``input_shape`` if given), without weights; safe mode (code in
    the file, e.g. a Lambda, is refused)."""
    from kerascnn.errors import DataError
    from kerascnn.tfquiet import import_tensorflow_if_installed

    import_tensorflow_if_installed()
    import keras

    import kerascnn.layers  # noqa: F401  (kerascnn's own layers registered for deserialization)

    if input_shape is not None:
        cfg = KC.with_input_shape(cfg, tuple(input_shape))
    try:
        return keras.saving.deserialize_keras_object(cfg, safe_mode=True)
    except Exception as e:  # noqa: BLE001 - foreign, code-carrying or impossible configs
        raise DataError(f"Keras cannot build {path}"
                        + (f" at {_shown(input_shape)}" if input_shape is not None else "")
                        + f": {e.__class__.__name__}: {first_line(e, 200, '')}") from None


@dataclass
class KerasReport(Report):
    """A ``Report`` for a Keras model: also the layers not analysed and Keras's own counts (when Keras
    built it). ``print(report)`` shows the summary table."""

    name: str = "model"
    unknown: list = field(default_factory=list)        # (layer name, class) without a rule
    keras_counts: dict = None                          # layer name -> Keras count_params(), or None
    keras_total: int = None
    shape_mismatches: list = field(default_factory=list)  # tensor shapes the config recorded that differ

    @property
    def keras_agrees(self):
        """Keras's count_params() equals the arithmetic on every layer (None without Keras's counts)."""
        if self.keras_counts is None:
            return None
        return all(self.keras_counts.get(l.name, l.params) == l.params for l in walk(self.layers))

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["model"] = self.name
        d["not_analysed"] = [{"name": n, "class": c} for n, c in self.unknown]
        if self.keras_counts is not None:
            d["keras"] = {"total_params": self.keras_total, "layers_match": self.keras_agrees}
        return d

    def __str__(self) -> str:
        from kerascnn.report import render

        return render(self, self.keras_counts, depth=2, title=f"Lecture arithmetic for {self.name}")

    def _repr_html_(self) -> str:
        from kerascnn.report import render_html

        return render_html(self, self.keras_counts, depth=2, title=f"Lecture arithmetic for {self.name}")


def load_keras_model(path: str):
    """Load a ``.keras``/``.h5`` file with its weights (no compile, safe mode: Lambda code is refused)."""
    from pathlib import Path

    import keras

    from kerascnn.errors import DataError

    if not Path(path).is_file():
        raise ConfigError(f"no such model file: {path}")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001 - foreign, corrupt, or code-carrying files
        raise DataError(f"cannot load {path}: {e.__class__.__name__}: {first_line(e, 200)}") from None
