"""A compact layer-spec language for ad-hoc stacks (pure Python).

The VGG paper's own notation, extended with strides, padding, repetition and blocks, so a
student can check a lecture exercise without writing Python::

    conv5-10s1p2                        ten 5x5 filters, stride 1, pad 2
    conv1x7-64p0x3  conv3-64s3x2        rectangular kernel / stride (h x w)
    conv3-64p2d2                        dilated (atrous) 3x3, dilation 2
    dwconv3s2p1  sepconv3-128p1m1       depthwise / depthwise-separable
    zeropad1  zeropad0:1x0:1            zero padding (t:b x l:r)
    maxpool2  maxpool3s2p1  avgpool2s2p1  gap  gmp
    fc120  dropout0.5  sdropout0.2  flatten  bn  ln  gn8
    relu  leakyrelu  leakyrelu0.2  elu  gelu  sigmoid  tanh  softmax  swish
    3*conv3-64p1nb                      a layer repeated
    2*(conv3-64p1nb, bn, relu)          a group repeated
    res(conv3-64p1nb,bn,relu,conv3-64p1nb,bn), relu                  F(x) + x, then ReLU
    res(conv3-128s2p1nb,bn,relu,conv3-128p1nb,bn | conv1-128s2nb,bn)  F(x) + G(x)
    cat(conv1-64 | conv1-96,conv3-128p1 | conv1-16,conv5-32p2 | maxpool3s1p1,conv1-32)
    resblock64  resblock128s2proj  bottleneck64proj  inception64-96-128-16-32-32

Layers are separated by commas, spaces, ``>`` or ``->``. Each kind's syntax is parsed by its
rule (``kerascnn.rules``); this module reads the structure (groups, repeats, blocks) and checks
the size of the result before building it.
"""
from __future__ import annotations

import difflib
import re

from kerascnn import specs as S
from kerascnn.errors import ConfigError, SpecError

MAX_LAYERS = 5000        # layers after every repeat is expanded (checked before expanding)
MAX_REPEAT = 1000
MAX_DIGITS = 7           # no size in a spec needs more; a 5,000-digit number is refused before int()
MAX_DEPTH = 16           # nesting of groups, blocks and repeats
MAX_TEXT = 20_000

SYNTAX_HELP = ("e.g. 'conv5-10s1p2', 'conv3-64p1, conv3-64p1', '2*(conv3-64p1,bn,relu)', 'maxpool2', "
               "'fc10' (see docs/spec-language.md)")
ACTIVATIONS = ("relu", "sigmoid", "tanh", "softmax", "leaky_relu", "elu", "gelu", "swish")

_TOKEN = re.compile(r"\s*([(),|*>]|[^\s(),|*>]+)")
_BLOCK_WORDS = {"res": "add", "cat": "concat"}


def _rules():
    from kerascnn.rules import RULES

    return list(RULES.values())


def keywords() -> list:
    """Every layer keyword of the spec language (from the rules), longest first."""
    words = {w for r in _rules() for w in r.keywords} | set(_BLOCK_WORDS)
    return sorted(words, key=lambda w: (-len(w), w))


def parse_layer(token: str) -> list:
    """One layer token (``conv3-64s2p1``, ``relu`` ...) -> list of specs."""
    t = token.strip().lower()
    if re.search(rf"\d{{{MAX_DIGITS + 1},}}", t):
        raise ConfigError(f"a number in layer {_short(token)!r} has more than {MAX_DIGITS} digits")
    for rule in _rules():
        out = rule.parse(t, token, SYNTAX_HELP)
        if out is not None:
            return out
    raise ConfigError(f"unknown layer {token!r}{_suggest(t)}; {SYNTAX_HELP}")


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[:n] + "..."


def _suggest(t: str) -> str:
    head = re.match(r"[a-z_]*", t).group(0)
    close = difflib.get_close_matches(head, keywords(), n=3, cutoff=0.6) if head else []
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


# --------------------------------------------------------------------------- structure
class _Reader:
    def __init__(self, text: str):
        self.toks = [m.group(1) for m in _TOKEN.finditer(text.replace("->", ">"))]
        self.i = 0

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self):
        t = self.peek()
        self.i += 1
        return t

    def expect(self, tok: str):
        got = self.take()
        if got != tok:
            raise ConfigError(f"expected {tok!r} in the layer spec, found {got or 'the end'!r}; {SYNTAX_HELP}")


def _seq(r: _Reader, depth: int, stop=(None,)) -> list:
    """items separated by ',' '>' or spaces, up to a token in ``stop``: [(count, node)]."""
    items = []
    while r.peek() not in stop:
        if r.peek() in (",", ">"):
            r.take()
            continue
        items.append(_item(r, depth))
    return items


def _item(r: _Reader, depth: int):
    tok = r.take()
    if tok is None:
        raise ConfigError(f"the layer spec ends where a layer was expected; {SYNTAX_HELP}")
    if tok in (")", "|", "*"):
        raise ConfigError(f"unexpected {tok!r} in the layer spec; {SYNTAX_HELP}")
    if depth > MAX_DEPTH:
        raise ConfigError(f"groups, blocks and repeats nest deeper than {MAX_DEPTH} levels")
    if r.peek() == "*":  # N*item
        if not tok.isdigit():
            raise ConfigError(f"a repeat count must be a number, found {_short(tok)!r}; {SYNTAX_HELP}")
        if len(tok) > MAX_DIGITS or int(tok) > MAX_REPEAT:
            raise ConfigError(f"repeat count above {MAX_REPEAT}: {_short(tok)}")
        n = int(tok)
        if n < 1:
            raise ConfigError(f"repeat count must be >= 1; received {n}")
        r.take()
        return ("repeat", n, _item(r, depth + 1))
    if tok == "(":
        inner = _seq(r, depth + 1, stop=(")", None))
        r.expect(")")
        return ("group", inner)
    if tok.lower() in _BLOCK_WORDS and r.peek() == "(":
        r.take()
        paths = [_seq(r, depth + 1, stop=("|", ")", None))]
        while r.peek() == "|":
            r.take()
            paths.append(_seq(r, depth + 1, stop=("|", ")", None)))
        r.expect(")")
        merge = _BLOCK_WORDS[tok.lower()]
        if not paths[0]:
            raise ConfigError(f"the first path of {tok.lower()}(...) needs at least one layer; {SYNTAX_HELP}")
        if merge == "add" and len(paths) == 1:
            paths.append([])  # res(F): F(x) + x
        if merge == "concat" and any(not p for p in paths):
            raise ConfigError(f"every path of cat(...) needs at least one layer; {SYNTAX_HELP}")
        return ("block", merge, paths)
    if r.peek() == "(":
        raise ConfigError(f"unknown block {tok!r}{_suggest(tok.lower())}: blocks are res(...) and cat(...)")
    return ("layer", tok, parse_layer(tok))


def _count(node) -> int:
    kind = node[0]
    if kind == "layer":
        return len(node[2])
    if kind == "repeat":
        return node[1] * _count(node[2])
    if kind == "group":
        return sum(_count(n) for n in node[1])
    return 1 + sum(_count(n) for p in node[2] for n in p)


def _expand(node) -> list:
    kind = node[0]
    if kind == "layer":
        return list(node[2])
    if kind == "repeat":
        return _expand(node[2]) * node[1]
    if kind == "group":
        return [s for n in node[1] for s in _expand(n)]
    paths = tuple(tuple(s for n in p for s in _expand(n)) for p in node[2])
    return [S.Branches(paths, node[1])]


def parse(text: str) -> list:
    """``"conv5-10s1p2, maxpool2"`` -> list of specs (raises ``SpecError``, a ``ConfigError``, on bad
    syntax, with one line that names the layer)."""
    try:
        return _parse(str(text))
    except SpecError:
        raise
    except ConfigError as e:
        raise SpecError(str(e)) from None


def _parse(text: str) -> list:
    if len(text) > MAX_TEXT:
        raise ConfigError(f"a layer spec may be at most {MAX_TEXT} characters; received {len(text)}")
    r = _Reader(text.strip())
    items = _seq(r, 0, stop=(None, ")"))
    if r.peek() is not None:
        raise ConfigError(f"unmatched {r.peek()!r} in the layer spec; {SYNTAX_HELP}")
    if not items:
        raise ConfigError(f"empty layer spec; {SYNTAX_HELP}")
    total = sum(_count(n) for n in items)
    if total > MAX_LAYERS:
        raise ConfigError(f"a layer spec may have at most {MAX_LAYERS} layers; this one expands to {total:,}")
    return [s for n in items for s in _expand(n)]


def to_text(specs: list) -> str:
    """Specs -> spec-language text (``parse(to_text(specs))`` gives the same layers)."""
    from kerascnn.rules import rule_for

    return ", ".join(rule_for(s).token() for s in specs)


def is_spec_like(text: str) -> bool:
    """True when ``text`` is meant as a layer spec (several layers, or one starting with a layer
    keyword, or a close misspelling of one such as 'layernrom')."""
    t = text.strip().lower()
    if re.search(r"[,>*\s()|]", t):
        return True
    words = keywords()
    if any(re.match(rf"^{re.escape(k)}(\d|$)", t) for k in words):
        return True
    head = re.match(r"[a-z_]*", t).group(0)
    return bool(head) and head == t and bool(difflib.get_close_matches(head, words, n=1, cutoff=0.8))
