"""Model registry: name -> spec function, plus one typed metadata record per model.

Modelled on timm's and torchvision's ``register_model``: a family file decorates one
function per model and the decorator registers it and returns it **unchanged**, so
``resnet18((224, 224, 3), 1000)`` still returns the model's spec list (see
``kerascnn.specs``). Everything else about a model (paper, year, default input,
classes, options, the published parameter and multiply-add figures with their
source) lives in one frozen ``ModelCfg`` record. Building a Keras model goes through
``build_model(name, ...)`` (also ``kerascnn.build``). Registering needs no TensorFlow.

A command's MODEL argument (a registered name, or a layer spec where the command takes one)
with its ``-o`` options, input shape and classes is resolved once, by ``model_ref``, into a
``ModelRef``: the record every command analyses and builds from.
"""
from __future__ import annotations

import difflib
import fnmatch
import importlib
import inspect
import re
from dataclasses import dataclass
from typing import Callable, Optional

from kerascnn.errors import ConfigError, GeometryError, ModelNotFound

_REGISTRY: dict = {}
_LOADED = False


@dataclass(frozen=True)
class Published:
    """One published figure for a model: parameters and/or multiply-adds, and where it comes from.

    ``params`` counts every weight (trainable + non-trainable, e.g. BatchNorm's moving
    statistics); ``trainable_params`` only the trainable ones (torchvision's convention);
    ``macs`` is multiply-adds per image (what torchvision and most papers call FLOPs).
    ``input_shape``/``num_classes``/``options`` default to the model's own.
    """

    source: str
    params: Optional[int] = None
    trainable_params: Optional[int] = None
    macs: Optional[int] = None
    input_shape: Optional[tuple] = None
    num_classes: Optional[int] = None
    options: tuple = ()  # ((key, value), ...)


@dataclass(frozen=True)
class ModelCfg:
    """Everything kerascnn knows about a registered model except its layers."""

    name: str
    family: str
    paper: str
    year: int
    default_input: tuple
    num_classes: int
    description: str
    option_defaults: tuple = ()  # ((key, default), ...) from the spec function's signature
    published: tuple = ()        # Published records

    @property
    def options(self) -> dict:
        return dict(self.option_defaults)


class ModelEntry:
    """A registered model: its ``ModelCfg`` record and its spec function."""

    __slots__ = ("cfg", "spec_fn")

    def __init__(self, cfg: ModelCfg, spec_fn: Callable):
        self.cfg, self.spec_fn = cfg, spec_fn

    # the record's fields, read-only, for callers that use entry.family, entry.default_input ...
    name = property(lambda self: self.cfg.name)
    family = property(lambda self: self.cfg.family)
    paper = property(lambda self: self.cfg.paper)
    year = property(lambda self: self.cfg.year)
    default_input = property(lambda self: self.cfg.default_input)
    num_classes = property(lambda self: self.cfg.num_classes)
    description = property(lambda self: self.cfg.description)
    options = property(lambda self: self.cfg.options)
    published = property(lambda self: self.cfg.published)

    def __repr__(self):
        return f"ModelEntry({self.cfg!r})"

    def arguments(self, input_shape=None, num_classes=None, options=None):
        """(input shape, classes, options) with the defaults filled in and the options checked."""
        input_shape = tuple(int(v) for v in (input_shape or self.default_input))
        num_classes = int(num_classes or self.num_classes)
        if num_classes < 1:
            raise ConfigError(f"number of classes must be >= 1; received {num_classes}")
        options = dict(options or {})
        unknown = set(options) - set(self.options)
        if unknown:
            known = ", ".join(f"{k}={v!r}" for k, v in self.options.items()) or "none"
            raise ConfigError(f"{self.name} has no option {sorted(unknown)[0]!r}; its options: {known}")
        return input_shape, num_classes, options

    def specs(self, input_shape=None, num_classes=None, **options) -> list:
        input_shape, num_classes, options = self.arguments(input_shape, num_classes, options)
        from kerascnn.specs import auto_name
        return auto_name(self.spec_fn(input_shape=input_shape, num_classes=num_classes, **options))

    def analyze(self, input_shape=None, num_classes=None, **options):
        """Lecture arithmetic for this model; a collapsing input raises one clear GeometryError."""
        from kerascnn import analysis

        input_shape, num_classes, options = self.arguments(input_shape, num_classes, options)
        specs = self.specs(input_shape, num_classes, **options)
        try:
            return analysis.analyze(specs, input_shape)
        except GeometryError as e:
            smallest = analysis.smallest_square_input(specs, input_shape[2])
            hint = (f"; the smallest input that works is {smallest}x{smallest}x{input_shape[2]}"
                    if smallest else "")
            shape = "x".join(map(str, input_shape))
            raise GeometryError(f"{self.name} cannot take a {shape} input: {e}{hint}") from None

    def build(self, input_shape=None, num_classes=None, **options):
        """Check the geometry in pure Python, then build the ``keras.Sequential``."""
        input_shape, num_classes, options = self.arguments(input_shape, num_classes, options)
        self.analyze(input_shape, num_classes, **options)
        from kerascnn.keras_build import build_sequential

        return build_sequential(self.specs(input_shape, num_classes, **options), input_shape, name=self.name)


def register_model(family: str, paper: str, year: int, default_input: tuple, num_classes: int = 1000,
                   published: tuple = (), name: Optional[str] = None, description: Optional[str] = None):
    """Register a spec function under its own name (or ``name``) and return it unchanged.

    The function takes ``input_shape``, ``num_classes`` and keyword options (their
    defaults become the model's options) and returns a list of specs.
    """

    def decorator(fn):
        model_name = name or fn.__name__
        sig = inspect.signature(fn)
        options = tuple((k, p.default) for k, p in sig.parameters.items()
                        if k not in ("input_shape", "num_classes") and p.default is not inspect.Parameter.empty)
        doc = description or inspect.getdoc(fn) or ""
        cfg = ModelCfg(model_name, family, paper, year, tuple(default_input), num_classes,
                       doc.splitlines()[0] if doc else model_name, options, tuple(published))
        if model_name in _REGISTRY:
            raise RuntimeError(f"model {model_name!r} registered twice")
        _REGISTRY[model_name] = ModelEntry(cfg, fn)
        return fn

    return decorator


def _load():
    global _LOADED
    if not _LOADED:
        importlib.import_module("kerascnn.models")
        _LOADED = True


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def list_models(pattern: str = "*") -> list:
    """Registered model names matching PATTERN, naturally sorted: a shell-style wildcard ('vgg1?_bn'),
    or a plain word, matched case-insensitively as a substring of the name or the family name."""
    _load()
    if any(ch in pattern for ch in "*?["):
        return sorted((n for n in _REGISTRY if fnmatch.fnmatch(n, pattern)), key=_natural_key)
    word = pattern.lower()
    return sorted((n for n, e in _REGISTRY.items() if word in n.lower() or word in e.family.lower()),
                  key=_natural_key)


def get_entry(name: str) -> ModelEntry:
    _load()
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
    _load()
    return name in _REGISTRY


def build_model(name: str, input_shape=None, num_classes=None, **options):
    """Build a registered model as a ``keras.Sequential`` (also ``kerascnn.build``)."""
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

    def analyze(self):
        """Lecture arithmetic; a collapsing input is one GeometryError with the smallest input that works."""
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
        """Check the geometry in pure Python, then build the ``keras.Sequential``."""
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
