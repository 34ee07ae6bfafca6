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
  (``1 + L(K-1)`` for a stride-1 stack); a block's field is the largest over its
  branches;
* activation memory: output elements x bytes per element (float32: 4).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Optional

from kerascnn import specs as S
from kerascnn.errors import ConfigError, GeometryError


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
    def receptive_field(self) -> int:
        """Receptive field of the last layer that still has a spatial grid."""
        spatial = [l for l in self.layers if len(l.output_shape) == 3 and l.cls not in ("Flatten",)]
        return spatial[-1].receptive_field if spatial else 1

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

    ``p`` is an int (zero padding per side), ``"valid"`` (0) or ``"same"``
    (Keras: ceil(W/S)). Returns ``(size, note)``; raises ``GeometryError`` if the
    size is zero or below.
    """
    if f < 1 or s < 1:
        raise ConfigError(f"{name}: kernel and stride must be >= 1; received F={f}, S={s}")
    note = ""
    if p == "same":
        out = -(-w // s)
    else:
        p = 0 if p == "valid" else int(p)
        if p < 0:
            raise ConfigError(f"{name}: padding must be >= 0; received P={p}")
        exact = Fraction(w - f + 2 * p, s) + 1
        out = math.floor(exact)
        if exact.denominator != 1 and out >= 1:
            note = (f"doesn't fit: ({w} - {f} + 2*{p})/{s} + 1 = {float(exact):.4g}, "
                    f"not an integer (floored to {out})")
    if out <= 0:
        shown = f"ceil({w}/{s})" if p == "same" else f"({w} - {f} + 2*{p})/{s} + 1"
        raise GeometryError(f"{name}: spatial size collapses: {shown} = {out} <= 0 "
                            f"(input {w}, kernel {f}, stride {s})", )
    return out, note


# --------------------------------------------------------------------------- walking
@dataclass
class _State:
    shape: tuple   # (H, W, C) or (N,)
    rf: int = 1
    jump: int = 1


def _conv_like(spec, st: _State, kernel: int, stride: int, padding, out_c: int):
    if len(st.shape) != 3:
        raise GeometryError(f"{spec.name}: needs an HxWxC input, received shape {st.shape}")
    h, w, _ = st.shape
    oh, nh = conv_output_size(h, kernel, stride, padding, spec.name)
    ow, nw = conv_output_size(w, kernel, stride, padding, spec.name)
    return (oh, ow, out_c), (nh or nw), st.rf + (kernel - 1) * st.jump, st.jump * stride


def _row(spec, shape, params, trainable, macs, rf, jump, bpe, note="", children=None):
    return LayerStats(spec.name, spec.keras_class, tuple(shape), params, trainable, macs, rf, jump,
                      math.prod(shape) * bpe, note, children or [])


def analyze_spec(spec: S.Spec, st: _State, bpe: int = 4) -> tuple:
    """One spec -> (LayerStats, new _State)."""
    if isinstance(spec, S.Conv):
        c_in = st.shape[-1] if st.shape else 0
        if spec.filters < 1:
            raise ConfigError(f"{spec.name}: filters must be >= 1; received {spec.filters}")
        if spec.groups < 1 or c_in % spec.groups or spec.filters % spec.groups:
            raise ConfigError(f"{spec.name}: groups={spec.groups} must divide input channels {c_in} "
                              f"and filters {spec.filters}")
        shape, note, rf, jump = _conv_like(spec, st, spec.kernel, spec.stride, spec.padding, spec.filters)
        per_out = spec.kernel * spec.kernel * c_in // spec.groups
        params = per_out * spec.filters + (spec.filters if spec.use_bias else 0)
        macs = shape[0] * shape[1] * spec.filters * per_out
        return _row(spec, shape, params, params, macs, rf, jump, bpe, note), _State(shape, rf, jump)
    if isinstance(spec, S.Pool):
        stride = spec.stride or spec.size
        shape, note, rf, jump = _conv_like(spec, st, spec.size, stride, spec.padding, st.shape[-1])
        return _row(spec, shape, 0, 0, 0, rf, jump, bpe, note), _State(shape, rf, jump)
    if isinstance(spec, S.GlobalPool):
        if len(st.shape) != 3:
            raise GeometryError(f"{spec.name}: needs an HxWxC input, received shape {st.shape}")
        k = max(st.shape[0], st.shape[1])
        rf = st.rf + (k - 1) * st.jump
        shape = (st.shape[-1],)
        return _row(spec, shape, 0, 0, 0, rf, st.jump, bpe), _State(shape, rf, st.jump)
    if isinstance(spec, S.Flatten):
        rf = st.rf
        if len(st.shape) == 3:
            rf = st.rf + (max(st.shape[0], st.shape[1]) - 1) * st.jump
        shape = (math.prod(st.shape),)
        return _row(spec, shape, 0, 0, 0, rf, st.jump, bpe), _State(shape, rf, st.jump)
    if isinstance(spec, S.Dense):
        if spec.units < 1:
            raise ConfigError(f"{spec.name}: units must be >= 1; received {spec.units}")
        n_in = st.shape[-1]
        positions = math.prod(st.shape[:-1])
        params = n_in * spec.units + (spec.units if spec.use_bias else 0)
        shape = tuple(st.shape[:-1]) + (spec.units,)
        return (_row(spec, shape, params, params, positions * n_in * spec.units, st.rf, st.jump, bpe),
                _State(shape, st.rf, st.jump))
    if isinstance(spec, S.BatchNorm):
        c = st.shape[-1]
        return _row(spec, st.shape, 4 * c, 2 * c, 0, st.rf, st.jump, bpe), st
    if isinstance(spec, (S.Dropout, S.Activation)):
        if isinstance(spec, S.Dropout) and not 0 <= spec.rate < 1:
            raise ConfigError(f"{spec.name}: dropout rate must be in [0, 1); received {spec.rate}")
        return _row(spec, st.shape, 0, 0, 0, st.rf, st.jump, bpe), st
    if isinstance(spec, S.BLOCK_TYPES):
        return _analyze_block(spec, st, bpe)
    raise ConfigError(f"unknown layer spec {spec!r}")


def _analyze_block(spec, st: _State, bpe: int):
    children, ends = [], []
    for branch in spec.branches():
        bst = st
        for sub in branch:
            row, bst = analyze_spec(sub, bst, bpe)
            children.append(row)
        ends.append(bst)
    if spec.merge == "concat":
        spatial = {e.shape[:2] for e in ends}
        if len(spatial) != 1:
            raise GeometryError(f"{spec.name}: branch sizes differ {sorted(spatial)}")
        shape = ends[0].shape[:2] + (sum(e.shape[2] for e in ends),)
    else:  # add
        shapes = {e.shape for e in ends}
        if len(shapes) != 1:
            raise GeometryError(f"{spec.name}: residual branch shapes differ {sorted(shapes)}; "
                                f"the shortcut needs a projection")
        shape = ends[0].shape
    rf = max(e.rf for e in ends)
    jump = max(e.jump for e in ends)
    params = sum(c.params for c in children)
    trainable = sum(c.trainable_params for c in children)
    macs = sum(c.macs for c in children)
    if spec.merge == "add":
        macs += 0  # the addition is not a multiply-add
    row = LayerStats(spec.name, spec.keras_class, shape, params, trainable, macs, rf, jump,
                     math.prod(shape) * bpe, "", children)
    return row, _State(shape, rf, jump)


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


def human(n: float, unit: str = "") -> str:
    """1234567 -> '1.23 M' (SI prefixes)."""
    for div, p in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.2f} {p}{unit}"
    return f"{n:.0f} {unit}".rstrip()


def human_bytes(n: float) -> str:
    for div, p in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= div:
            return f"{n / div:.2f} {p}"
    return f"{int(n)} B"
