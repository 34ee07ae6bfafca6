"""A compact layer-spec language for ad-hoc stacks (pure Python).

The VGG paper's own notation, extended with strides, padding and repetition, so a
student can check a lecture exercise without writing Python::

    conv5-10s1p2                  ten 5x5 filters, stride 1, pad 2
    conv3-64p1, conv3-64p1        two stacked 3x3 convolutions
    3*conv3-64p1nb                three 3x3 convolutions without bias
    maxpool2  maxpool3s2  avgpool2s2p1  gap
    fc120  dropout0.5  flatten  bn  relu  softmax

Layers are separated by commas, spaces or ``>``. Convolution modifiers, in any
order after ``convF-K``: ``sS`` stride, ``pP`` zero padding (or ``same`` /
``valid``), ``gG`` groups, ``nb`` no bias. Pool modifiers: ``sS``, ``pP``,
``same``. ``N*LAYER`` repeats a layer N times.
"""
from __future__ import annotations

import re

from kerascnn import specs as S
from kerascnn.errors import ConfigError

_MODS = re.compile(r"(s\d+|p\d+|g\d+|nb|same|valid)")
_CONV = re.compile(r"^conv(\d+)-(\d+)(.*)$")
_POOL = re.compile(r"^(max|avg)?pool(\d+)(.*)$")
_FC = re.compile(r"^(?:fc|dense)(\d+)(nb)?$")
_DROP = re.compile(r"^dropout(0?\.\d+|0)$")
_REPEAT = re.compile(r"^(\d+)\*(.+)$")
ACTIVATIONS = ("relu", "sigmoid", "tanh", "softmax", "elu", "gelu", "swish")

SYNTAX_HELP = ("e.g. 'conv5-10s1p2', 'conv3-64p1, conv3-64p1', '3*conv3-64p1nb', 'maxpool2', "
               "'fc10' (see README: layer spec syntax)")


def _modifiers(text: str, allowed: str, token: str) -> dict:
    out = {}
    pos = 0
    for m in _MODS.finditer(text):
        if m.start() != pos:
            break
        pos = m.end()
        mod = m.group(0)
        key = mod if mod in ("nb", "same", "valid") else mod[0]
        if key not in allowed.split(","):
            raise ConfigError(f"modifier {mod!r} is not allowed in layer {token!r}; {SYNTAX_HELP}")
        out[key] = mod
    if pos != len(text):
        raise ConfigError(f"cannot read {text[pos:]!r} in layer {token!r}; {SYNTAX_HELP}")
    return out


def _int(v: str, token: str, what: str, minimum: int = 1) -> int:
    n = int(v)
    if n < minimum:
        raise ConfigError(f"{what} must be >= {minimum} in layer {token!r}; received {n}")
    return n


def parse_layer(token: str) -> list:
    t = token.strip().lower()
    m = _REPEAT.match(t)
    if m:
        n = _int(m.group(1), token, "repeat count")
        if n > 1000:
            raise ConfigError(f"repeat count above 1000 in layer {token!r}")
        return parse_layer(m.group(2)) * n
    m = _CONV.match(t)
    if m:
        f, k = _int(m.group(1), token, "kernel size"), _int(m.group(2), token, "filters")
        mods = _modifiers(m.group(3), "s,p,g,nb,same,valid", token)
        pad = "same" if "same" in mods else 0 if "valid" in mods else int(mods.get("p", "p0")[1:])
        return [S.Conv(k, f, _int(mods.get("s", "s1")[1:], token, "stride"), pad,
                       use_bias="nb" not in mods, groups=_int(mods.get("g", "g1")[1:], token, "groups"))]
    m = _POOL.match(t)
    if m:
        size = _int(m.group(2), token, "pool size")
        mods = _modifiers(m.group(3), "s,p,same,valid", token)
        pad = "same" if "same" in mods else 0 if "valid" in mods else int(mods.get("p", "p0")[1:])
        stride = _int(mods["s"][1:], token, "stride") if "s" in mods else None
        return [S.Pool(m.group(1) or "max", size, stride, pad)]
    m = _FC.match(t)
    if m:
        return [S.Dense(_int(m.group(1), token, "units"), use_bias=not m.group(2))]
    m = _DROP.match(t)
    if m:
        return [S.Dropout(float(m.group(1)))]
    if t in ("gap", "globalavgpool"):
        return [S.GlobalPool("avg")]
    if t in ("gmp", "globalmaxpool"):
        return [S.GlobalPool("max")]
    if t == "flatten":
        return [S.Flatten()]
    if t in ("bn", "batchnorm"):
        return [S.BatchNorm()]
    if t in ACTIVATIONS:
        return [S.Activation(t)]
    raise ConfigError(f"unknown layer {token!r}; {SYNTAX_HELP}")


def parse(text: str) -> list:
    """``"conv5-10s1p2, maxpool2"`` -> list of specs (raises ConfigError on bad syntax)."""
    tokens = [t for t in re.split(r"\s*(?:,|->|>|\s)\s*", text.strip()) if t]
    if not tokens:
        raise ConfigError(f"empty layer spec; {SYNTAX_HELP}")
    out = []
    for tok in tokens:
        out.extend(parse_layer(tok))
    if len(out) > 5000:
        raise ConfigError("a layer spec may have at most 5000 layers")
    return out


_KEYWORDS = ("conv", "maxpool", "avgpool", "pool", "fc", "dense", "dropout", "gap", "gmp", "flatten", "bn",
             "batchnorm") + ACTIVATIONS


def is_spec_like(text: str) -> bool:
    """True when ``text`` is meant as a layer spec (several layers, or one starting with a layer keyword)."""
    t = text.strip().lower()
    if re.search(r"[,>*\s]", t):
        return True
    return any(re.match(rf"^{k}(\d|$)", t) for k in _KEYWORDS)
