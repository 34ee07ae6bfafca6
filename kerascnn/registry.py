"""Model registry: look a model up by name, list the zoo, resolve a command's MODEL argument.

The entries and their records are defined in ``kerascnn.models.base`` (re-exported here):
modelled on timm's and torchvision's ``register_model``, a family file decorates one
function per model and the decorator registers it and returns it **unchanged**, so
``resnet18((224, 224, 3), 1000)`` still returns the model's spec list (see
``kerascnn.specs``); models that Keras's own constructor builds (the ``keras.applications``
family, ``kerascnn.models.keras_apps``) are ``KerasEntry`` records with no spec list.
Everything else about a model (paper, year, default input, classes, options, the published
parameter and multiply-add figures with their source) lives in one frozen ``ModelCfg``
record. Building a Keras model goes through ``build_model(name, ...)`` (also
``kerascnn.build``). Importing this module imports the zoo (``kerascnn.models``), which
registers every model without TensorFlow; the zoo never imports the registry.

A command's MODEL argument (a registered name, or a layer spec where the command takes one)
with its ``-o`` options, input shape and classes is resolved once, by ``model_ref``, into a
``ModelRef``: the record every command analyses and builds from.
"""
from __future__ import annotations

import difflib
import fnmatch
import re
from dataclasses import dataclass
from typing import Optional

from kerascnn import models as _zoo  # noqa: F401  importing the zoo registers every model (no TensorFlow)
from kerascnn.errors import ConfigError, GeometryError, ModelNotFound
from kerascnn.models.base import ENTRIES as _REGISTRY
from kerascnn.models.base import (  # noqa: F401  (the registry's public names)
    KerasEntry,
    ModelCfg,
    ModelEntry,
    NoSpecs,
    Published,
    SpecEntry,
    register_keras_model,
    register_model,
)


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def list_models(pattern: str = "*", kind: Optional[str] = None) -> list:
    """Registered model names matching PATTERN, naturally sorted: a shell-style wildcard ('vgg1?_bn'),
    or a plain word, matched case-insensitively as a substring of the name, the family or the
    source ('keras' lists the keras.applications family). ``kind``: only "specs" or "keras" entries."""
    entries = {n: e for n, e in _REGISTRY.items() if kind is None or e.kind == kind}
    if any(ch in pattern for ch in "*?["):
        return sorted((n for n in entries if fnmatch.fnmatch(n, pattern)), key=_natural_key)
    word = pattern.lower()
    return sorted((n for n, e in entries.items() if word in n.lower() or word in e.family.lower()
                   or (e.kind == "keras" and word in e.source.lower())), key=_natural_key)


def get_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; run `kerascnn list` for the zoo"
        raise ModelNotFound(f"unknown model {name!r}{hint}") from None


def model_cfg(name: str) -> ModelCfg:
    """The metadata record of a registered model."""
    return get_entry(name).cfg


def is_model(name: str) -> bool:
    return name in _REGISTRY


def build_model(name: str, input_shape=None, num_classes=None, **options):
    """Build a registered model (also ``kerascnn.build``): a ``keras.Sequential`` from its spec list, or,
    for the keras.applications family, the functional model Keras's own constructor builds."""
    return get_entry(name).build(input_shape, num_classes, **options)


def parse_options(entry: ModelEntry, pairs) -> dict:
    """``["small_input=true", "groups=2"]`` -> typed keyword options for ``entry``."""
    out = {}
    for pair in pairs or ():
        if "=" not in pair:
            raise ConfigError(f"model option must look like KEY=VALUE; received {pair!r}")
        key, raw = (s.strip() for s in pair.split("=", 1))
        if key not in entry.options:
            known = ", ".join(f"{k}={v!r}" for k, v in entry.options.items()) or "none"
            raise ConfigError(f"{entry.name} has no option {key!r}; its options: {known}")
        default = entry.options[key]
        out[key] = _coerce(raw, default, key)
    return out


@dataclass(frozen=True)
class ModelRef:
    """A model argument resolved once: a registered model (``entry``) or a layer spec
    (``layer_specs``), at one input shape and class count, with typed options."""

    name: str                        # the registered name, or "spec"
    entry: Optional[ModelEntry]      # None for a layer spec
    input_shape: Optional[tuple]     # None only for a layer spec given without one
    num_classes: Optional[int]       # None for a layer spec (its last layer decides)
    options: dict
    layer_specs: tuple = ()

    @property
    def is_spec(self) -> bool:
        return self.entry is None

    def specs(self) -> list:
        if self.entry is not None:
            return self.entry.specs(self.input_shape, self.num_classes, **self.options)
        return list(self.layer_specs)

    def check(self) -> None:
        """The geometry checks that need no TensorFlow (a Keras-built model's arithmetic needs the model)."""
        if self.entry is not None:
            self.entry.check(self.input_shape, self.num_classes, **self.options)
        else:
            self.analyze()

    def analyze(self):
        """Lecture arithmetic; a collapsing input is one GeometryError with the smallest input that works.
        For a keras.applications model: the Keras-model analysis of the built model (TensorFlow)."""
        if self.entry is not None:
            return self.entry.analyze(self.input_shape, self.num_classes, **self.options)
        from kerascnn import analysis

        if self.input_shape is None:
            raise ConfigError("a layer spec needs an input shape H,W,C (e.g. --input-shape 32,32,3)")
        try:
            return analysis.analyze(list(self.layer_specs), self.input_shape)
        except GeometryError as e:
            smallest = analysis.smallest_square_input(list(self.layer_specs), self.input_shape[2])
            c = self.input_shape[2]
            hint = f"; the smallest input that works is {smallest}x{smallest}x{c}" if smallest else ""
            raise GeometryError(f"{e}{hint}") from None

    def build(self):
        """Check the geometry in pure Python, then build the Keras model."""
        if self.entry is not None:
            return self.entry.build(self.input_shape, self.num_classes, **self.options)
        self.analyze()
        from kerascnn.keras_build import build_sequential

        return build_sequential(list(self.layer_specs), self.input_shape, name="spec")


def model_ref(ref: str, options=None, input_shape=None, num_classes=None, spec: bool = False) -> ModelRef:
    """MODEL (a registered name; with ``spec`` also a layer spec such as "conv3-8, relu") and its
    options (``-o KEY=VALUE`` strings, or a dict of typed options) -> a ``ModelRef``. An unknown
    name is one ModelNotFound with suggestions, an unknown option one ConfigError."""
    if is_model(ref):
        entry = get_entry(ref)
        opts = dict(options) if isinstance(options, dict) else parse_options(entry, options)
        shape, k, opts = entry.arguments(input_shape, num_classes, opts)
        return ModelRef(entry.name, entry, shape, k, opts)
    if not spec:
        get_entry(ref)   # raises ModelNotFound with suggestions
    if options:
        raise ConfigError("-o/--option applies to registered models, not to layer specs")
    from kerascnn import speclang

    try:
        specs = speclang.parse(ref)
    except ConfigError:
        if not speclang.is_spec_like(ref):
            get_entry(ref)  # unknown model: raises with suggestions
        raise
    shape = tuple(int(v) for v in input_shape) if input_shape is not None else None
    return ModelRef("spec", None, shape, num_classes, {}, tuple(specs))


def _coerce(raw: str, default, key: str):
    low = raw.lower()
    if isinstance(default, bool) or default is None and low in ("true", "false", "yes", "no", "1", "0"):
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"option {key} expects true or false; received {raw!r}")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"option {key} expects an integer; received {raw!r}") from None
    if isinstance(default, float):
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"option {key} expects a number; received {raw!r}") from None
    return raw
