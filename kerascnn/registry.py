"""Model registry: name -> builder, default input, paper, description.

Modelled on timm's ``register_model``/``list_models``: a family file decorates
one function per model; that function returns the model's spec list (see
``kerascnn.specs``) and the decorator turns it into a builder that returns a
``keras.Sequential``. Registering needs no TensorFlow; building imports Keras.
"""
from __future__ import annotations

import difflib
import fnmatch
import functools
import importlib
import inspect
import re
from dataclasses import dataclass, field
from typing import Callable

from kerascnn.errors import ConfigError, GeometryError, ModelNotFound

_REGISTRY: dict = {}
_LOADED = False


@dataclass
class ModelEntry:
    name: str
    spec_fn: Callable
    family: str
    paper: str
    year: int
    default_input: tuple
    num_classes: int
    description: str
    options: dict = field(default_factory=dict)

    def resolve(self, input_shape=None, num_classes=None, options=None):
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
        input_shape, num_classes, options = self.resolve(input_shape, num_classes, options)
        from kerascnn.specs import auto_name
        return auto_name(self.spec_fn(input_shape=input_shape, num_classes=num_classes, **options))

    def analyze(self, input_shape=None, num_classes=None, **options):
        """Lecture arithmetic for this model; a collapsing input raises one clear GeometryError."""
        from kerascnn import analysis

        input_shape, num_classes, options = self.resolve(input_shape, num_classes, options)
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
        input_shape, num_classes, options = self.resolve(input_shape, num_classes, options)
        self.analyze(input_shape, num_classes, **options)
        from kerascnn.keras_build import build_sequential

        return build_sequential(self.specs(input_shape, num_classes, **options), input_shape, name=self.name)


def register_model(family: str, paper: str, year: int, default_input: tuple, num_classes: int = 1000):
    """Register a spec function under its own name and return a Keras builder in its place.

    The decorated function takes ``input_shape``, ``num_classes`` and keyword options
    and returns a list of specs. The returned builder has the signature
    ``builder(input_shape=None, num_classes=None, **options) -> keras.Sequential``.
    """

    def decorator(fn):
        sig = inspect.signature(fn)
        options = {k: p.default for k, p in sig.parameters.items()
                   if k not in ("input_shape", "num_classes") and p.default is not inspect.Parameter.empty}
        doc = inspect.getdoc(fn) or ""
        entry = ModelEntry(fn.__name__, fn, family, paper, year, tuple(default_input), num_classes,
                           doc.splitlines()[0] if doc else fn.__name__, options)
        if fn.__name__ in _REGISTRY:
            raise RuntimeError(f"model {fn.__name__!r} registered twice")
        _REGISTRY[fn.__name__] = entry

        @functools.wraps(fn)
        def builder(input_shape=None, num_classes=None, **opts):
            return entry.build(input_shape, num_classes, **opts)

        builder.entry = entry
        return builder

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


def is_model(name: str) -> bool:
    _load()
    return name in _REGISTRY


def build_model(name: str, input_shape=None, num_classes=None, **options):
    """Build a registered model as a ``keras.Sequential``."""
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
