"""Lecture arithmetic, executable and pure Python (no TensorFlow).

For every layer of a spec list (``kerascnn.specs``):

* output size ``(W - F + 2P) / S + 1``; a non-integer result "doesn't fit" (the
  layer floors, as Keras and PyTorch do, and the row says so); a size of zero or
  below raises ``GeometryError`` naming the layer;
* parameters ``F*F*C/groups*K + K`` for a convolution, ``in*out + out`` for a
  dense layer, ``2C + 2C`` (trainable + moving statistics) for BatchNorm;
* multiply-adds: every conv output element costs ``F*F*C_in/groups``; a dense
  layer costs ``in*out``; pooling, BN and activations count 0;
* receptive field ``r_out = r_in + (F-1)*j_in`` and jump ``j_out = j_in*S``
  (``1 + L(K-1)`` for a stride-1 stack; a dilated kernel spans ``1 + d(F-1)``); a
  block's field is the largest over its branches; per axis, shown as ``HxW`` when
  they differ;

Each layer kind's formulas live in its rule (``kerascnn.rules``); this module walks
the list and collects the rows.
* activation memory: output elements x bytes per element (float32: 4).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from kerascnn import specs as S
from kerascnn.errors import ConfigError, GeometryError
from kerascnn.report import human, human_bytes  # noqa: F401  (formatting lives with the tables)


@dataclass
class LayerStats:
    name: str
    cls: str
    output_shape: tuple
    params: int
    trainable_params: int
    macs: int
    receptive_field: int
    jump: int
    activation_bytes: int
    note: str = ""
    children: list = field(default_factory=list)

    @property
    def non_trainable_params(self) -> int:
        return self.params - self.trainable_params

    @property
    def fits(self) -> bool:
        return "doesn't fit" not in self.note

    def to_dict(self) -> dict:
        d = {
            "name": self.name,
            "class": self.cls,
            "output_shape": list(self.output_shape),
            "params": self.params,
            "trainable_params": self.trainable_params,
            "non_trainable_params": self.non_trainable_params,
            "macs": self.macs,
            "receptive_field": self.receptive_field,
            "jump": self.jump,
            "activation_bytes": self.activation_bytes,
        }
        if self.note:
            d["note"] = self.note
        if self.children:
            d["children"] = [c.to_dict() for c in self.children]
        return d


@dataclass
class Report:
    input_shape: tuple
    layers: list
    bytes_per_element: int = 4

    @property
    def total_params(self) -> int:
        return sum(l.params for l in self.layers)

    @property
    def trainable_params(self) -> int:
        return sum(l.trainable_params for l in self.layers)

    @property
    def non_trainable_params(self) -> int:
        return self.total_params - self.trainable_params

    @property
    def macs(self) -> int:
        return sum(l.macs for l in self.layers)

    @property
    def output_shape(self) -> tuple:
        return self.layers[-1].output_shape if self.layers else self.input_shape

    @property
    def receptive_field(self):
        """Receptive field of the last layer that still has a spatial grid (None without one: an MLP)."""
        spatial = [l for l in self.layers if len(l.output_shape) == 3 and l.cls not in ("Flatten",)]
        return spatial[-1].receptive_field if spatial else None

    @property
    def activation_bytes(self) -> int:
        return sum(_tree_bytes(l) for l in self.layers)

    @property
    def param_bytes(self) -> int:
        return self.total_params * self.bytes_per_element

    def warnings(self) -> list:
        out = []
        for l in walk(self.layers):
            if l.note:
                out.append(f"{l.name}: {l.note}")
        return out

    def __str__(self) -> str:
        from kerascnn.report import render

        return render(self, None, depth=2, title="Lecture arithmetic")

    def _repr_html_(self) -> str:
        """Jupyter shows a report as an HTML table."""
        from kerascnn.report import render_html

        return render_html(self, None, depth=2, title="Lecture arithmetic")

    def to_dict(self) -> dict:
        return {
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "non_trainable_params": self.non_trainable_params,
            "macs": self.macs,
            "receptive_field": self.receptive_field,
            "activation_bytes": self.activation_bytes,
            "param_bytes": self.param_bytes,
            "warnings": self.warnings(),
            "layers": [l.to_dict() for l in self.layers],
        }


def _tree_bytes(l: LayerStats) -> int:
    return l.activation_bytes + sum(_tree_bytes(c) for c in l.children)


def walk(layers):
    """Every row, depth first (blocks, then their inner layers)."""
    for l in layers:
        yield l
        yield from walk(l.children)


# --------------------------------------------------------------------------- sizes
def conv_output_size(w: int, f: int, s: int = 1, p=0, name: str = "layer"):
    """Output size of a conv/pool along one axis and a note if it "doesn't fit".

    ``p`` is an int (zero padding per side), a ``(before, after)`` pair, ``"valid"`` (0) or
    ``"same"`` (P = (F-1)/2 per side for odd F; (F-2)/2 before and F/2 after for even F), always
    through the lecture's formula ``(W - F + 2P)/S + 1``. Returns ``(size, note)``; raises
    ``GeometryError`` if the size is zero or below.
    """
    from kerascnn.rules.base import axis_out, pads

    if f < 1 or s < 1:
        raise ConfigError(f"{name}: kernel and stride must be >= 1; received F={f}, S={s}")
    if isinstance(p, (tuple, list)):
        lo, hi = (int(v) for v in p)
        if min(lo, hi) < 0:
            raise ConfigError(f"{name}: padding must be >= 0; received P={p}")
    else:
        lo, hi = pads(p, (f, f), name)[0]
    return axis_out(w, f, s, lo, hi, name)


# --------------------------------------------------------------------------- walking
def _hw(v):
    """(3, 3) -> 3; (1, 7) -> (1, 7); start coordinates stay floats."""
    v = tuple(v)
    return v[0] if v[0] == v[1] else v


def _whole(x):
    """A receptive field in whole input pixels (after up-sampling the formula can give a fraction:
    rounded up); a jump as an int, or a float below one pixel after up-sampling."""
    return x if isinstance(x, int) else int(x) if x == int(x) else float(x)


def _field_row(rf, jump) -> tuple:
    """The (receptive field, jump) a row shows: per axis, ``HxW`` pairs only where they differ."""
    return (_hw(math.ceil(r) if not isinstance(r, int) else r for r in rf), _hw(_whole(j) for j in jump))


@dataclass
class _State:
    shape: tuple   # (H, W, C) or (N,)
    rf: tuple = (1, 1)
    jump: tuple = (1, 1)
    start: tuple = (0.0, 0.0)


def analyze_spec(spec: S.Spec, st: _State, bpe: int = 4) -> tuple:
    """One spec -> (LayerStats, new _State), through the spec's rule (``kerascnn.rules``)."""
    from kerascnn.rules import rule_for

    rule = rule_for(spec)
    shape = tuple(rule.output_shape(st.shape))
    note = rule.note(st.shape)
    params, trainable = rule.params(st.shape)
    macs = rule.macs(st.shape)
    rf, jump, start = rule.field(st.rf, st.jump, st.start, in_shape=st.shape)
    children = []
    if rule.is_block:
        for branch in spec.branches():
            bst = st
            for sub in branch:
                row, bst = analyze_spec(sub, bst, bpe)
                children.append(row)
    row = LayerStats(spec.name, spec.keras_class, shape, params, trainable, macs, *_field_row(rf, jump),
                     math.prod(shape) * bpe, note, children)
    return row, _State(shape, rf, jump, start)


def analyze(specs: list, input_shape, bytes_per_element: int = 4) -> Report:
    """Walk a spec list from ``input_shape`` (H, W, C) and return the per-layer report."""
    input_shape = tuple(int(v) for v in input_shape)
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ConfigError(f"input shape must be three positive integers H,W,C; received {input_shape}")
    specs = S.auto_name(list(specs))
    st = _State(input_shape)
    rows = []
    for spec in specs:
        row, st = analyze_spec(spec, st, bytes_per_element)
        rows.append(row)
    return Report(input_shape, rows, bytes_per_element)


def smallest_square_input(specs: list, channels: int, limit: int = 2048) -> Optional[int]:
    """The smallest S such that an SxSxC input passes through ``specs`` (None if none <= limit)."""
    for size in range(1, limit + 1):
        try:
            analyze(specs, (size, size, channels))
            return size
        except GeometryError:
            continue
    return None
