"""One rule per layer kind: the single home of each kind's arithmetic, Keras layers and spec syntax.

``rule_for(spec)`` returns the rule of one spec (a layer, one at a time), with

* ``output_shape(in_shape)`` -> the output shape (H, W, C) or (N,) (``GeometryError`` if it collapses),
  ``note(in_shape)`` -> "" or the lecture's "doesn't fit" remark;
* ``params(in_shape)`` -> ``(total, trainable)``; ``macs(in_shape)`` -> multiply-adds;
* ``field(rf, jump, start)`` -> ``(rf, jump, start)``: receptive field, jump and the input coordinate of
  the centre of output unit 0's field, each an int/float or an ``(h, w)`` pair (pairs come back);
* ``keras_layers(dtype=None)`` -> the Keras layers that compute the lecture's values (a block's one
  layer is built from its branches by ``kerascnn.layers.spec_layers``, the builders' single entry);
* ``token()`` -> the spec-language text of the spec (``kerascnn.speclang`` parses it back).

Like fvcore's table of op handlers, ``RULES`` maps each spec class to its rule; ``analysis``,
``keras_build``, ``speclang`` and ``visualize`` dispatch through it. Pure Python: Keras is imported
only inside ``keras_layers`` (which use ``kerascnn.exact_layers``, a leaf module, where stock Keras
cannot compute a kind exactly); nothing here imports ``kerascnn.layers`` or ``keras_build``.

Adding a layer kind: a frozen dataclass in ``kerascnn.specs`` (added to ``SPEC_TYPES``) and one
``@register(SpecClass)`` rule class here (``conv.py`` for sliding windows, ``simple.py`` for the
rest, ``blocks.py`` for branches) with its formulas, Keras layers, ``keywords``, ``token`` and
``parse``; the analysis, the builder, the spec language and the summary pick it up.
"""
from __future__ import annotations

from kerascnn.rules.base import RULES, Rule, axis_out, pads, pair, rule_for  # noqa: F401
from kerascnn.rules import conv as _conv, simple as _simple, blocks as _blocks  # noqa: F401


__all__ = ["Rule", "RULES", "rule_for", "pair", "pads", "axis_out"]
