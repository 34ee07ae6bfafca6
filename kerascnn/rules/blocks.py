"""Blocks with parallel branches: Inception, ResNet's residual block, and ``res(...)``/``cat(...)``
written in the spec language. A block's params and MACs are its branches' sums; its field is the
largest over its branches (the start follows the first branch)."""
from __future__ import annotations

import re

from kerascnn import specs as S
from kerascnn.errors import ConfigError, GeometryError
from kerascnn.rules.base import Rule, as_pairs, register, rule_for


class BlockRule(Rule):
    """A block's Keras layer (``InceptionBlock``, ``ResidualBlock``, ``BranchBlock``) is built from its
    branches by ``kerascnn.layers.spec_layers``: the rules never import the Keras blocks (no import cycle)."""

    is_block = True

    def keras_layers(self, dtype=None):
        raise TypeError(f"{self.name}: a block's Keras layer is built by kerascnn.layers.spec_layers")

    def _walk(self, in_shape):
        out = []
        for branch in self.spec.branches():
            shape, steps = tuple(in_shape), []
            for sub in branch:
                r = rule_for(sub)
                steps.append((r, shape))
                shape = r.output_shape(shape)
            out.append((steps, shape))
        return out

    def output_shape(self, in_shape):
        self._spatial(in_shape)
        ends = [shape for _, shape in self._walk(in_shape)]
        if self.spec.merge == "concat":
            spatial = {e[:2] for e in ends}
            if len(spatial) != 1:
                raise GeometryError(f"{self.name}: branch sizes differ {sorted(spatial)}")
            return ends[0][:2] + (sum(e[2] for e in ends),)
        shapes = {e for e in ends}
        if len(shapes) != 1:
            raise GeometryError(f"{self.name}: residual branch shapes differ {sorted(shapes)}; "
                                f"the shortcut needs a projection")
        return ends[0]

    def params(self, in_shape):
        tot = tr = 0
        for steps, _ in self._walk(in_shape):
            for r, shape in steps:
                a, b = r.params(shape)
                tot, tr = tot + a, tr + b
        return tot, tr

    def macs(self, in_shape):
        return sum(r.macs(shape) for steps, _ in self._walk(in_shape) for r, shape in steps)

    def field(self, rf, jump, start, in_shape=None):
        rf, jump, start = as_pairs(rf, jump, start)
        ends = []
        for branch in self.spec.branches():
            b = (rf, jump, start)
            for sub in branch:
                b = rule_for(sub).field(*b)
            ends.append(b)
        return (tuple(max(e[0][i] for e in ends) for i in (0, 1)),
                tuple(max(e[1][i] for e in ends) for i in (0, 1)), ends[0][2])


@register(S.Inception)
class InceptionRule(BlockRule):
    """``inception64-96-128-16-32-32``: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj."""

    keywords = ("inception",)
    _RE = re.compile(r"^inception(\d+)-(\d+)-(\d+)-(\d+)-(\d+)-(\d+)$")

    def token(self):
        sp = self.spec
        return f"inception{sp.c1}-{sp.c2[0]}-{sp.c2[1]}-{sp.c3[0]}-{sp.c3[1]}-{sp.c4}"

    @classmethod
    def parse(cls, t, token, help_text):
        m = cls._RE.match(t)
        if not m:
            return None
        v = [int(x) for x in m.groups()]
        if min(v) < 1:
            raise ConfigError(f"channel counts must be >= 1 in layer {token!r}")
        return [S.Inception(v[0], (v[1], v[2]), (v[3], v[4]), v[5])]


@register(S.Residual)
class ResidualRule(BlockRule):
    """``resblock64`` (basic), ``resblock128s2proj``, ``bottleneck64proj``: ReLU(F(x) + shortcut(x));
    a ``v1`` suffix is keras.applications' variant (stride on the first 1x1, biased convolutions)."""

    keywords = ("resblock", "bottleneck")
    _RE = re.compile(r"^(resblock|bottleneck)(\d+)(?:s(\d+))?(proj)?(v1)?$")

    def token(self):
        sp = self.spec
        t = f"{'bottleneck' if sp.bottleneck else 'resblock'}{sp.filters}"
        return (t + (f"s{sp.stride}" if sp.stride != 1 else "") + ("proj" if sp.projection else "")
                + ("v1" if sp.v1 else ""))

    @classmethod
    def parse(cls, t, token, help_text):
        m = cls._RE.match(t)
        if not m:
            return None
        f, s = int(m.group(2)), int(m.group(3) or 1)
        if f < 1 or s < 1:
            raise ConfigError(f"filters and stride must be >= 1 in layer {token!r}")
        return [S.Residual(f, s, bottleneck=m.group(1) == "bottleneck", projection=bool(m.group(4)),
                           v1=bool(m.group(5)))]


@register(S.Branches)
class BranchesRule(BlockRule):
    """``res(main | shortcut)``: the sum of the paths (an empty path is the identity);
    ``cat(a | b | c)``: the paths concatenated along channels."""

    keywords = ("res", "cat")

    def output_shape(self, in_shape):
        if self.spec.merge not in ("add", "concat"):
            raise ConfigError(f"{self.name}: merge must be 'add' or 'concat'; received {self.spec.merge!r}")
        if not self.spec.paths:
            raise ConfigError(f"{self.name}: a block needs at least one path")
        return super().output_shape(in_shape)

    def token(self):
        word = "res" if self.spec.merge == "add" else "cat"
        paths = list(self.spec.paths)
        if word == "res" and len(paths) == 2 and not paths[1]:
            paths = paths[:1]  # res(F) is F(x) + x
        return f"{word}(" + " | ".join(",".join(rule_for(s).token() for s in p) for p in paths) + ")"
