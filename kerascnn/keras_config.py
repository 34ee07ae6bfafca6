"""A ``.keras`` file's architecture, read without TensorFlow and without its weights (pure Python).

A ``.keras`` file is a zip: ``config.json`` (the model's serialized config, as
``keras.saving.serialize_keras_object`` writes it), ``metadata.json`` and ``model.weights.h5``.
``read_config`` returns the first, checked; ``kerascnn.keras_analysis`` walks it with the rules.
Only Keras 3's format is read; a legacy ``.h5`` file goes through Keras.

A few helpers describe the config's graph: ``layers_of`` (a model's layer configs), ``input_refs`` /
``output_refs`` (the ``[layer, node, tensor]`` triples), ``node_inputs`` (the tensors a call reads)
and ``input_shape`` / ``with_input_shape`` (the model's H, W, C, and a copy built for another size).
"""
from __future__ import annotations

import copy
import json
import zipfile
from pathlib import Path

from kerascnn.errors import ConfigError, DataError

MAX_CONFIG_BYTES = 256 * 2**20   # a config.json larger than this is not an architecture
MODEL_CLASSES = ("Functional", "Sequential", "Model")


def read_config(path) -> dict:
    """``config.json`` of a ``.keras`` zip as a dict (``class_name``, ``config`` ...)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"no such model file: {path}")
    try:
        with zipfile.ZipFile(p) as z:
            info = z.getinfo("config.json")
            if info.file_size > MAX_CONFIG_BYTES:
                raise DataError(f"cannot read {path}: config.json is {info.file_size:,} bytes")
            cfg = json.loads(z.read(info))
    except KeyError:
        raise DataError(f"cannot read {path}: a .keras file holds config.json; this zip does not") from None
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"cannot read {path}: not a Keras 3 .keras file ({e.__class__.__name__}: "
                        f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None
    if not isinstance(cfg, dict) or cfg.get("class_name") not in MODEL_CLASSES or not isinstance(
            cfg.get("config"), dict):
        kind = cfg.get("class_name") if isinstance(cfg, dict) else type(cfg).__name__
        raise DataError(f"cannot read {path}: config.json describes a {kind!r}, not a Sequential or "
                        f"functional model")
    return cfg


def is_model(layer_cfg: dict) -> bool:
    return layer_cfg.get("class_name") in MODEL_CLASSES and isinstance(
        layer_cfg.get("config", {}).get("layers"), list)


def layers_of(model_cfg: dict) -> list:
    return model_cfg["config"].get("layers", [])


def _triples(v) -> list:
    """``["in", 0, 0]`` or ``[["in", 0, 0], ...]`` -> list of (name, node, tensor)."""
    if not v:
        return []
    if isinstance(v, dict):
        v = list(v.values())
    if isinstance(v[0], str):
        return [tuple(v)]
    out = []
    for x in v:
        out.extend(_triples(x))
    return out


def input_refs(model_cfg: dict) -> list:
    return _triples(model_cfg["config"].get("input_layers"))


def output_refs(model_cfg: dict) -> list:
    return _triples(model_cfg["config"].get("output_layers"))


def node_inputs(node) -> list:
    """The tensors one call reads, in order: ``[(layer, node, tensor, saved shape)]``."""
    out = []

    def visit(v):
        if isinstance(v, dict):
            if v.get("class_name") == "__keras_tensor__":
                c = v.get("config", {})
                name, k, i = c["keras_history"]
                out.append((name, int(k), int(i), tuple(c.get("shape") or ())))
            else:
                for x in v.values():
                    visit(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                visit(x)

    if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
        visit(node.get("args", []))
        visit(node.get("kwargs", {}))
    else:  # Keras 2 style: [[name, node, tensor, kwargs], ...]
        for ref in node:
            out.append((ref[0], int(ref[1]), int(ref[2]), ()))
    return out


def _input_layer_shape(layer_cfg: dict):
    c = layer_cfg.get("config", {})
    shape = c.get("batch_shape") or c.get("batch_input_shape")
    return tuple(shape[1:]) if shape else None


def input_shape(model_cfg: dict):
    """The model's input shape without the batch axis (``None`` for an unknown size), or None."""
    layers = layers_of(model_cfg)
    if model_cfg["class_name"] == "Sequential":
        first = layers[0] if layers else {}
        if first.get("class_name") == "InputLayer":
            return _input_layer_shape(first)
        build = model_cfg.get("build_config", {}).get("input_shape")
        return tuple(build[1:]) if build else None
    refs = input_refs(model_cfg)
    if len(refs) != 1:
        return None
    for layer in layers:
        if layer.get("name", layer.get("config", {}).get("name")) == refs[0][0]:
            return _input_layer_shape(layer)
    return None


def with_input_shape(model_cfg: dict, shape: tuple) -> dict:
    """A copy of the config whose (first) input is ``shape`` (H, W, C): what Keras builds at another size."""
    cfg = copy.deepcopy(model_cfg)
    _drop_build_configs(cfg)  # each layer builds again at the new size on its first call
    layers = layers_of(cfg)
    if cfg["class_name"] == "Sequential":
        targets = [layers[0]] if layers and layers[0].get("class_name") == "InputLayer" else []
        if not targets:
            cfg.setdefault("build_config", {})["input_shape"] = [None, *shape]
    else:
        names = {r[0] for r in input_refs(cfg)}
        targets = [lay for lay in layers if lay.get("name", lay.get("config", {}).get("name")) in names]
    for t in targets:
        c = t["config"]
        c.pop("batch_input_shape", None)
        c["batch_shape"] = [None, *shape]
    return cfg


def _drop_build_configs(v):
    if isinstance(v, dict):
        v.pop("build_config", None)
        for x in v.values():
            _drop_build_configs(x)
    elif isinstance(v, (list, tuple)):
        for x in v:
            _drop_build_configs(x)
