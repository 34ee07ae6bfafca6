"""What a zoo model is: its record (``ModelCfg``), its published figures (``Published``) and the
two kinds of entry the registry holds, with the decorators the family files register them with.

* ``SpecEntry`` (``register_model``): a function that returns the model's spec list
  (``kerascnn.specs``); the arithmetic (``analyze``) is pure Python and the Keras model is
  built from the same list (``kerascnn.keras_build``). The decorator returns the function
  unchanged, as timm's ``register_model`` does: ``resnet18((224, 224, 3), 1000)`` gives specs.
* ``KerasEntry`` (``register_keras_model``): a model that Keras's own constructor builds
  (``keras.applications.MobileNetV2`` ...). It has **no spec list**: ``specs()`` raises
  ``NoSpecs``; its arithmetic is the Keras-model analysis of the built model
  (``kerascnn.analyze(model)``, TensorFlow needed), and what ``kerascnn list`` shows are figures
  recorded from that analysis (``Published``; a test checks them), so listing stays TensorFlow-free.

Both kinds fill in options and the input the same way (``arguments``; a variant may have its own
natural input, ``ModelCfg.natural_inputs``), check the geometry without TensorFlow (``check``)
and build a Keras model (``build``). This module imports nothing from ``kerascnn.registry``:
the registry imports the zoo (``kerascnn.models``), never the other way round.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Optional

from kerascnn.errors import ConfigError, GeometryError

ENTRIES: dict = {}   # name -> ModelEntry, filled by the decorators below as the family files load


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
    source: str = "kerascnn"     # who builds it: "kerascnn" (its spec list) or "keras.applications.<Name>"
    natural_inputs: tuple = ()   # (((option, value), (H, W, C)), ...): a variant's own natural input

    @property
    def options(self) -> dict:
        return dict(self.option_defaults)

    def natural_input(self, options: dict | None = None) -> tuple:
        """The input the model (with these options) is made for: a variant's own (torchvision's
        AlexNet: 224x224x3), else ``default_input``."""
        options = options or {}
        for (key, value), shape in self.natural_inputs:
            if str(options.get(key, self.options.get(key))).lower() == str(value).lower():
                return tuple(shape)
        return tuple(self.default_input)


class NoSpecs(ConfigError):
    """A model built by Keras's own constructor has no spec list."""


class ModelEntry:
    """A registered model: its ``ModelCfg`` record and how to build it. ``kind`` says which:
    ``"specs"`` (``SpecEntry``) or ``"keras"`` (``KerasEntry``)."""

    __slots__ = ("cfg",)
    kind = "specs"

    def __init__(self, cfg: ModelCfg):
        self.cfg = cfg

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
    source = property(lambda self: self.cfg.source)

    @property
    def has_specs(self) -> bool:
        return self.kind == "specs"

    def __repr__(self):
        return f"{type(self).__name__}({self.cfg!r})"

    def arguments(self, input_shape=None, num_classes=None, options=None):
        """(input shape, classes, options) with the defaults filled in and the options checked."""
        options = dict(options or {})
        unknown = set(options) - set(self.options)
        if unknown:
            known = ", ".join(f"{k}={v!r}" for k, v in self.options.items()) or "none"
            raise ConfigError(f"{self.name} has no option {sorted(unknown)[0]!r}; its options: {known}")
        input_shape = tuple(int(v) for v in (input_shape or self.cfg.natural_input(options)))
        num_classes = int(num_classes or self.num_classes)
        if num_classes < 1:
            raise ConfigError(f"number of classes must be >= 1; received {num_classes}")
        return input_shape, num_classes, options

    def check(self, input_shape=None, num_classes=None, **options) -> None:
        """The geometry checks that need no TensorFlow: one clear error for an input the model cannot take."""
        self.analyze(input_shape, num_classes, **options)

    def figures(self) -> tuple:
        """(params, trainable params, multiply-adds) at the model's natural input, without TensorFlow."""
        r = self.analyze()
        return r.total_params, r.trainable_params, r.macs

    def specs(self, input_shape=None, num_classes=None, **options) -> list:
        raise NotImplementedError

    def analyze(self, input_shape=None, num_classes=None, **options):
        raise NotImplementedError

    def build(self, input_shape=None, num_classes=None, **options):
        raise NotImplementedError


class SpecEntry(ModelEntry):
    """A model written as a spec list: pure-Python arithmetic, Keras model built from the same list."""

    __slots__ = ("spec_fn",)
    kind = "specs"

    def __init__(self, cfg: ModelCfg, spec_fn: Callable):
        super().__init__(cfg)
        self.spec_fn = spec_fn

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


class KerasEntry(ModelEntry):
    """A model built by Keras's own constructor (``keras_fn(input_shape, num_classes, name, **options)``
    returns the Keras model). No spec list; ``check_fn(input_shape, name)`` is its TensorFlow-free
    geometry check; ``figures()`` come from the recorded ``Published`` figure at the natural input."""

    __slots__ = ("keras_fn", "check_fn", "extra")
    kind = "keras"

    def __init__(self, cfg: ModelCfg, keras_fn: Callable, check_fn: Callable, extra=None):
        super().__init__(cfg)
        self.keras_fn, self.check_fn, self.extra = keras_fn, check_fn, extra

    def specs(self, input_shape=None, num_classes=None, **options) -> list:
        raise NoSpecs(f"{self.name} is built by {self.source}: it has no spec list (its arithmetic is the "
                      f"Keras-model analysis: kerascnn.analyze(kerascnn.build({self.name!r})), or `kerascnn "
                      f"summary {self.name}`)")

    def check(self, input_shape=None, num_classes=None, **options) -> None:
        input_shape, num_classes, options = self.arguments(input_shape, num_classes, options)
        self.check_fn(input_shape, self.name)

    def figures(self) -> tuple:
        for pub in self.published:
            if pub.input_shape in (None, tuple(self.default_input)) and not pub.options and pub.params:
                return pub.params, pub.trainable_params, pub.macs
        raise ConfigError(f"{self.name}: no recorded figures at its natural input")

    def analyze(self, input_shape=None, num_classes=None, **options):
        """The Keras-model analysis of the built model (``kerascnn.analyze(model)``; needs TensorFlow)."""
        from kerascnn.keras_analysis import analyze_keras

        return analyze_keras(self.build(input_shape, num_classes, **options))

    def build(self, input_shape=None, num_classes=None, **options):
        input_shape, num_classes, options = self.arguments(input_shape, num_classes, options)
        self.check_fn(input_shape, self.name)
        return self.keras_fn(input_shape, num_classes, self.name, **options)


def _add(entry: ModelEntry) -> None:
    if entry.name in ENTRIES:
        raise RuntimeError(f"model {entry.name!r} registered twice")
    ENTRIES[entry.name] = entry


def register_model(family: str, paper: str, year: int, default_input: tuple, num_classes: int = 1000,
                   published: tuple = (), name: Optional[str] = None, description: Optional[str] = None,
                   natural_inputs: tuple = ()):
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
                       doc.splitlines()[0] if doc else model_name, options, tuple(published),
                       natural_inputs=tuple(natural_inputs))
        _add(SpecEntry(cfg, fn))
        return fn

    return decorator


def register_keras_model(name: str, keras_fn: Callable, check_fn: Callable, *, family: str, paper: str, year: int,
                         default_input: tuple, source: str, description: str, num_classes: int = 1000,
                         published: tuple = (), extra=None) -> ModelEntry:
    """Register a model that Keras's own constructor builds (no spec list, no options)."""
    cfg = ModelCfg(name, family, paper, year, tuple(default_input), num_classes, description, (),
                   tuple(published), source=source)
    entry = KerasEntry(cfg, keras_fn, check_fn, extra)
    _add(entry)
    return entry
