"""The ``Rule`` base class, the rule table and the shared window geometry (pure Python)."""
from __future__ import annotations

import contextlib
import contextvars
import math
import re
from fractions import Fraction

from kerascnn.errors import ConfigError, GeometryError

RULES: dict = {}


def register(spec_cls):
    """Class decorator: make ``rule_cls`` the rule of ``spec_cls``."""
    def deco(rule_cls):
        rule_cls.spec_type = spec_cls
        RULES[spec_cls] = rule_cls
        return rule_cls
    return deco


def rule_for(spec) -> "Rule":
    """The rule for one spec (raises ``ConfigError`` for an unknown spec type)."""
    cls = RULES.get(type(spec))
    if cls is None:
        raise ConfigError(f"unknown layer spec {spec!r}")
    return cls(spec)


def pair(v, what: str = "size", name: str = "layer") -> tuple:
    """``3`` -> (3, 3); ``(1, 7)`` -> (1, 7)."""
    if isinstance(v, (list, tuple)):
        if len(v) != 2:
            raise ConfigError(f"{name}: {what} must be an int or an (h, w) pair; received {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


def pads(padding, kernel_hw: tuple, name: str = "layer") -> tuple:
    """Padding spelling -> ((top, bottom), (left, right)) for an effective kernel ``kernel_hw``.

    ``"same"``: (F-1)/2 on every side for odd F, ((F-2)/2, F/2) for even F.
    """
    if padding == "valid" or padding is None:
        return (0, 0), (0, 0)
    if padding == "same":
        return tuple(((f - 1) // 2, f // 2) for f in kernel_hw)
    if isinstance(padding, str):
        raise ConfigError(f"{name}: padding must be an int, a pair, 'same' or 'valid'; received {padding!r}")
    if isinstance(padding, (list, tuple)):
        if len(padding) != 2:
            raise ConfigError(f"{name}: padding must be P, (ph, pw) or ((top, bottom), (left, right)); "
                              f"received {padding!r}")
        out = tuple(pair(p, "padding", name) for p in padding)
    else:
        p = int(padding)
        out = ((p, p), (p, p))
    if min(min(o) for o in out) < 0:
        raise ConfigError(f"{name}: padding must be >= 0; received P={padding!r}")
    return out


def axis_out(w: int, f: int, s: int, lo: int, hi: int, name: str = "layer", ceil: bool = False):
    """The lecture's ``(W - F + 2P)/S + 1`` along one axis (``lo``/``hi``: padding before/after).

    Returns ``(size, note)``: a non-integer result is floored (``ceil``: rounded up, PyTorch's
    ``ceil_mode``, dropping a last window that would start in the bottom/right padding) and noted as
    "doesn't fit"; a size of zero or below raises ``GeometryError``.
    """
    if f < 1 or s < 1:
        raise ConfigError(f"{name}: kernel and stride must be >= 1; received F={f}, S={s}")
    shown = f"({w} - {f} + 2*{lo})/{s} + 1" if lo == hi else f"({w} - {f} + {lo}+{hi})/{s} + 1"
    exact = Fraction(w - f + lo + hi, s) + 1
    out = math.ceil(exact) if ceil else math.floor(exact)
    if ceil and out > 1 and (out - 1) * s >= w + lo:
        out -= 1  # PyTorch: the last window must start inside the input or its top/left padding
    if out <= 0:
        raise GeometryError(f"{name}: spatial size collapses: {shown} = {out} <= 0 "
                            f"(input {w}, kernel {f}, stride {s})")
    note = ""
    if exact.denominator != 1:
        how = f"ceil_mode: rounded up to {out}" if ceil else f"floored to {out}"
        note = f"doesn't fit: {shown} = {float(exact):.4g}, not an integer ({how})"
    return out, note


def as_pairs(*vals):
    return tuple(v if isinstance(v, tuple) else (v, v) for v in vals)


def fmt_hw(v) -> str:
    """(3, 3) -> '3'; (1, 7) -> '1x7'."""
    v = pair(v)
    return str(v[0]) if v[0] == v[1] else f"{v[0]}x{v[1]}"


def fmt_pad(padding) -> str:
    if padding in ("same", "valid"):
        return padding
    if padding in (0, None):
        return ""
    p = pads(padding, (1, 1))
    if p[0] == p[1] and p[0][0] == p[0][1]:
        return f"p{p[0][0]}"
    if p[0][0] == p[0][1] and p[1][0] == p[1][1]:
        return f"p{p[0][0]}x{p[1][0]}"
    return f"p{p[0][0]}:{p[0][1]}x{p[1][0]}:{p[1][1]}"


_MOD = re.compile(r"s(?P<s>\d+)(?:x(?P<s2>\d+))?"
                  r"|p(?P<t>\d+)(?::(?P<b>\d+))?(?:x(?P<l>\d+)(?::(?P<r>\d+))?)?"
                  r"|d(?P<d>\d+)(?:x(?P<d2>\d+))?|g(?P<g>\d+)|m(?P<m>\d+)|o(?P<o>\d+)(?:x(?P<o2>\d+))?"
                  r"|nb|same|valid|ceil")
_PADDING_WORDS = ("p", "same", "valid")


def parse_mods(text: str, allowed: str, token: str, help_text: str) -> dict:
    """Modifiers after a layer keyword: ``s2``/``s3x2`` stride, ``p1``/``p1x2``/``p0:1x0:1`` padding,
    ``d2`` dilation, ``g2`` groups, ``m2`` depth multiplier, ``o1`` output padding (transposed
    convolution), ``nb`` no bias, ``same``/``valid``, ``ceil`` (pooling's ceil mode)."""
    out, seen, pos = {}, {}, 0
    for m in _MOD.finditer(text):
        if m.start() != pos:
            break
        pos = m.end()
        mod = m.group(0)
        key = mod if mod in ("nb", "same", "valid", "ceil") else mod[0]
        if key not in allowed.split(","):
            raise ConfigError(f"modifier {mod!r} is not allowed in layer {token!r}; {help_text}")
        if key in seen:
            raise ConfigError(f"modifier {mod!r} given twice in layer {token!r} ({seen[key]!r} before)")
        other = next((seen[k] for k in _PADDING_WORDS if k in seen), None) if key in _PADDING_WORDS else None
        if other is not None:
            raise ConfigError(f"padding given twice in layer {token!r}: {other!r} and {mod!r} conflict; "
                              f"give one of pP, same, valid")
        seen[key] = mod
        g = {k: (int(v) if v is not None else None) for k, v in m.groupdict().items()}
        if key == "s":
            out["s"] = _hw(g["s"], g["s2"])
        elif key == "p":
            t, b, l, r = g["t"], g["b"], g["l"], g["r"]
            b = t if b is None else b
            if l is None:
                l, r = t, b
            r = l if r is None else r
            out["p"] = t if t == b == l == r else (((t, b), (l, r)) if (t != b or l != r) else (t, l))
        elif key in ("d", "o"):
            out[key] = _hw(g[key], g[key + "2"])
        elif key in ("g", "m"):
            out[key] = g[key]
        else:
            out[key] = True
    if pos != len(text):
        raise ConfigError(f"cannot read {text[pos:]!r} in layer {token!r}; {help_text}")
    return out


def _hw(a, b):
    return a if b is None or a == b else (a, b)


def padding_of(mods: dict):
    return "same" if "same" in mods else 0 if "valid" in mods else mods.get("p", 0)


# kerascnn values builds what stock Keras refuses (a convolution with stride > 1 and dilation > 1) as an
# exact equivalent; everywhere else (training, summary) that layer is refused with the reason.
_EXACT = contextvars.ContextVar("kerascnn_exact_windows", default=False)


@contextlib.contextmanager
def exact_windows():
    """Within this block, ``keras_layers`` builds a strided dilated convolution as the stride-1
    dilated convolution subsampled (``kerascnn.exact_layers``) instead of refusing it."""
    token = _EXACT.set(True)
    try:
        yield
    finally:
        _EXACT.reset(token)


def exact_mode() -> bool:
    return _EXACT.get()


def check_min(v, minimum: int, what: str, token: str):
    for x in pair(v):
        if x < minimum:
            raise ConfigError(f"{what} must be >= {minimum} in layer {token!r}; received {x}")
    return v


class Rule:
    """The rule of one spec. Subclasses override what differs from a parameter-free,
    shape-preserving layer."""

    spec_type = None
    keywords: tuple = ()      # spec-language keywords (for suggestions and is_spec_like)
    is_block = False

    def __init__(self, spec):
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.name or type(self.spec).__name__.lower()

    # ---- arithmetic
    def output_shape(self, in_shape) -> tuple:
        return tuple(in_shape)

    def note(self, in_shape) -> str:
        return ""

    def params(self, in_shape) -> tuple:
        return 0, 0

    def macs(self, in_shape) -> int:
        return 0

    def field(self, rf, jump, start, in_shape=None) -> tuple:
        return as_pairs(rf, jump, start)

    # ---- Keras and spec syntax
    def keras_layers(self, dtype=None) -> list:
        raise TypeError(f"no Keras layer for spec {self.spec!r}")

    def token(self) -> str:
        raise NotImplementedError

    @classmethod
    def parse(cls, t: str, token: str, help_text: str):
        """Spec-language token (lower case) -> list of specs, or None if not this kind."""
        return None

    # ---- helpers
    def _kw(self, dtype=None) -> dict:
        kw = {"name": self.spec.name}
        if dtype is not None:
            kw["dtype"] = dtype
        return kw

    def _spatial(self, in_shape):
        if len(in_shape) != 3:
            raise GeometryError(f"{self.name}: needs an HxWxC input, received shape {tuple(in_shape)}")
        return in_shape
