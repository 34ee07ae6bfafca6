"""A ``.keras`` file's architecture, read without TensorFlow and without its weights (pure Python).

A ``.keras`` file is a zip: ``config.json`` (the model's serialized config, as
``keras.saving.serialize_keras_object`` writes it), ``metadata.json`` and ``model.weights.h5``.
``read_config`` returns the first, checked; ``kerascnn.keras_analysis`` walks it with the rules.
Only Keras 3's format is read; a legacy ``.h5`` file goes through Keras.

``to_spec`` maps one layer's config to the spec whose rule computes its arithmetic (Keras's ``"same"``
read as the padding Keras really applies). A few helpers describe the config's graph: ``layers_of`` (a model's layer configs), ``input_refs`` /
``output_refs`` (the ``[layer, node, tensor]`` triples), ``node_inputs`` (the tensors a call reads)
and ``input_shape`` / ``with_input_shape`` (the model's H, W, C, and a copy built for another size).
"""
from __future__ import annotations

import copy
import json
import zipfile
from pathlib import Path

from kerascnn import specs as S
from kerascnn.errors import ConfigError, DataError, first_line

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
                        f"{first_line(e, 200, '')})") from None
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


# --------------------------------------------------------------------------- a layer's config -> its spec
def _hw2(v) -> tuple:
    return (int(v), int(v)) if isinstance(v, (int, float)) else tuple(int(x) for x in v)


def _same_pads(in_shape, kernel, strides, dilation=(1, 1)):
    """Keras's "same" as the lecture's explicit ((top, bottom), (left, right)): in all
    max((ceil(W/S) - 1) S + F_eff - W, 0), the smaller half before (TensorFlow's rule), so at stride 2
    on an even input (0, 1), not P on both sides."""
    out = []
    for w, f, s, d in zip(in_shape[:2], kernel, strides, dilation):
        total = max((-(-w // s) - 1) * s + 1 + d * (f - 1) - w, 0)
        out.append((total // 2, total - total // 2))
    return tuple(out)


def _padding(c, in_shape, kernel, strides, dilation=(1, 1)):
    pad = c.get("padding", "valid")
    if pad == "same":
        return _same_pads(in_shape, kernel, strides, dilation)
    if pad == "valid":
        return 0
    raise _Unmapped


def _transpose_pads(c, in_shape, kernel, strides, dilation):
    """Keras's Conv2DTranspose padding as (crop before, crop after) per axis and an output padding
    (zeros at the end): the transposed output O is the full (H-1)S + F_eff cropped by TensorFlow's
    "same" padding of a convolution from O back to H."""
    crops, extra = [], []
    ops = c.get("output_padding")
    ops = (None, None) if ops is None else _hw2(ops)
    for h, f, s, d, op in zip(in_shape[:2], kernel, strides, dilation, ops):
        f_eff = 1 + d * (f - 1)
        full = (h - 1) * s + f_eff
        if c.get("padding", "valid") == "valid":
            o = full + (max(f_eff, s) - f_eff if op is None else op)
            crops.append((0, 0))
        else:
            o = h * s if op is None else (h - 1) * s + f_eff % 2 + op
            total = max(full - o, 0)
            crops.append((total // 2, total - total // 2))
        extra.append(o - full + sum(crops[-1]))
    return tuple(crops), tuple(extra)


class _Unmapped(Exception):
    pass


def _channels_last_axis(axis) -> bool:
    axis = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    return len(axis) == 1 and axis[0] in (-1, 3)


def _kerascnn_block(cls: str, c: dict, name: str):
    if cls == "InceptionBlock":
        return S.Inception(int(c["c1"]), tuple(c["c2"]), tuple(c["c3"]), int(c["c4"]), name=name)
    if cls == "ResidualBlock":
        return S.Residual(int(c["filters"]), int(c.get("strides", 1)), bool(c.get("bottleneck")),
                          bool(c.get("projection")), bool(c.get("fused")), v1=bool(c.get("v1")), name=name)
    if cls == "BranchBlock":
        paths = tuple(tuple(S.spec_from_dict(s) for s in p) for p in c["paths"])
        return S.Branches(paths, c.get("merge", "add"), name=name)
    return None


def to_spec(layer_cfg: dict, in_shape=(1, 1, 1)):
    """The spec of a Keras layer config (``in_shape``: its input, H, W, C), or None when no rule covers it."""
    try:
        return _to_spec(layer_cfg, tuple(in_shape) if len(in_shape) == 3 else (1, 1, 1))
    except (_Unmapped, KeyError, TypeError, ValueError):
        return None


def _to_spec(layer_cfg, in_shape):
    cls, c = layer_cfg.get("class_name"), layer_cfg.get("config") or {}
    name = c.get("name") or layer_cfg.get("name")
    if c.get("data_format", "channels_last") != "channels_last":
        return None
    block = _kerascnn_block(cls, c, name)
    if block is not None:
        return block
    if cls in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose"):
        return _conv_spec(cls, c, in_shape, name)
    if cls in ("MaxPooling2D", "AveragePooling2D"):
        k = _hw2(c["pool_size"])
        s = _hw2(c.get("strides") or k)
        return S.Pool("max" if cls.startswith("Max") else "avg", k, s, _padding(c, in_shape, k, s), name=name)
    if cls in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        return S.GlobalPool("avg" if "Average" in cls else "max", name=name)
    if cls in ("ZeroPadding2D", "NegInfPadding2D"):  # the geometry of padding, whatever it pads with
        return S.ZeroPad(tuple(_hw2(p) if isinstance(p, (list, tuple)) else (int(p), int(p))
                               for p in c["padding"]), name=name)
    if cls == "Cropping2D":
        return S.Crop(tuple(_hw2(p) if isinstance(p, (list, tuple)) else (int(p), int(p))
                            for p in c["cropping"]), name=name)
    if cls == "UpSampling2D" and c.get("interpolation", "nearest") in ("nearest", "bilinear"):
        return S.UpSample(_hw2(c.get("size", 2)), c.get("interpolation", "nearest"), name=name)
    if cls == "Flatten":
        return S.Flatten(name=name)
    if cls == "Dense":
        return S.Dense(int(c["units"]), use_bias=bool(c.get("use_bias", True)), name=name)
    if cls in ("BatchNormalization", "LayerNormalization", "GroupNormalization"):
        if not _channels_last_axis(c.get("axis", -1)):
            return None
        center, scale = bool(c.get("center", True)), bool(c.get("scale", True))
        if cls == "BatchNormalization":
            return S.BatchNorm(center=center, scale=scale, name=name)
        if cls == "LayerNormalization":
            rms = bool(c.get("rms_scaling", False))  # gamma only (deprecated Keras option)
            return S.LayerNorm(center=center and not rms, scale=scale or rms, name=name)
        return S.GroupNorm(int(c.get("groups", 32)), center=center, scale=scale, name=name)
    if cls in ("Dropout", "SpatialDropout2D"):
        return (S.Dropout if cls == "Dropout" else S.SpatialDropout)(float(c.get("rate", 0.5)), name=name)
    if cls == "LayerScale":  # keras.applications' ConvNeXt (projection_dim = C) or kerascnn's
        return S.LayerScale(float(c.get("init_values", 1e-6)), name=name)
    if cls == "Rescaling":
        return S.Rescale(c.get("scale", 1.0), c.get("offset", 0.0), name=name)
    if cls == "Normalization" and _channels_last_axis(c.get("axis", -1)):
        mean, var = c.get("mean"), c.get("variance")
        return S.Normalize(None if mean is None else tuple(_flat(mean)),
                           None if var is None else tuple(_flat(var)), name=name)
    return None


def _conv_spec(cls: str, c: dict, in_shape, name: str):
    k, s, d = _hw2(c["kernel_size"]), _hw2(c.get("strides", 1)), _hw2(c.get("dilation_rate", 1))
    bias = bool(c.get("use_bias", True))
    if cls == "Conv2DTranspose":
        crops, extra = _transpose_pads(c, in_shape, k, s, d)
        return S.ConvTranspose(int(c["filters"]), k, s, crops, extra, d, use_bias=bias, name=name)
    pad = _padding(c, in_shape, k, s, d)
    if cls == "Conv2D":
        return S.Conv(int(c["filters"]), k, s, pad, use_bias=bias, groups=int(c.get("groups", 1)), dilation=d,
                      name=name)
    if cls == "DepthwiseConv2D":
        return S.DepthwiseConv(k, s, pad, depth_multiplier=int(c.get("depth_multiplier", 1)), dilation=d,
                               use_bias=bias, name=name)
    return S.SeparableConv(int(c["filters"]), k, s, pad, depth_multiplier=int(c.get("depth_multiplier", 1)),
                           dilation=d, use_bias=bias, name=name)


def _flat(v) -> list:
    return [x for item in v for x in _flat(item)] if isinstance(v, (list, tuple)) else [v]
