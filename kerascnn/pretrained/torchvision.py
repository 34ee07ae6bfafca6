"""torchvision / timm checkpoints (PyTorch ``state_dict`` layouts) into kerascnn models.

Sources: ``.safetensors`` read with ``safetensors.numpy`` (no PyTorch), ``.pth``/``.pt`` with
``torch.load(weights_only=True)`` when PyTorch is installed (tensors only, never arbitrary
pickled objects). Models and the kerascnn build that reproduces each:

* VGG-11/13/16/19 (``_bn`` too): ``vggNN[_bn]`` (keys ``features.<i>``, ``classifier.<0,3,6>``);
* ResNet-18/34/50: ``resnetNN`` (v1.5, the default; keys ``conv1``, ``bn1``, ``layerS.B.convK``,
  ``downsample.0/1``, ``fc``) -- timm's ResNets use the same names and load too;
* AlexNet: ``alexnet -o variant=torchvision`` (``features.<i>``, ``classifier.<1,4,6>``);
* GoogLeNet: ``googlenet -o variant=torchvision`` (``conv1.conv``, ``inception3a.branch2.0.bn``,
  ``fc``); ``aux1.*``/``aux2.*`` (training-only auxiliary heads, in torchvision's checkpoint) are
  ignored and reported.

Conversions: convolution kernels OIHW -> HWIO; Linear (out, in) -> (in, out), and for the first
dense layer after a Flatten the input rows are permuted from PyTorch's (C, H, W) flatten order to
Keras's (H, W, C); BatchNorm weight/bias/running_mean/running_var -> gamma/beta/moving_mean/
moving_variance, and the model's epsilon must be the source's (1e-5; GoogLeNet's BasicConv2d
1e-3); ``num_batches_tracked`` is ignored. Loading is strict: every weight of the model gets
exactly one source tensor of the right shape, and every tensor of the file is used; otherwise one
``WeightsError`` lists the first few keys, and the model is unchanged. Only the classifier may
stay fresh: absent from the file, for another number of classes, or -- VGG/AlexNet at another
input size, whose first dense layer then sees another feature map -- the whole dense head (as a
keras.applications ``_notop`` file); the report lists what is new.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from kerascnn.errors import first_line
from kerascnn.pretrained.base import LoadReport, WeightsError, weighted_layers

SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")   # .bin: pytorch_model.bin (Hugging Face / timm)
TORCH_BN_EPSILON = 1e-5
# what each family needs built (model option -> value accepted), for the one-line refusal
VARIANT = {"alexnet": ("variant", ("torchvision",)), "googlenet": ("variant", ("torchvision",)),
           "resnet50": ("variant", ("v1.5", "torchvision"))}
IGNORED_PREFIXES = ("aux1.", "aux2.")
# torchvision's ImageNet checkpoints (torchvision.models.<Name>_Weights.IMAGENET1K_V1; resnet50: V2)
TORCHVISION_URL = "https://download.pytorch.org/models/"
TORCHVISION_FILES = {
    "vgg11": "vgg11-8a719046.pth", "vgg11_bn": "vgg11_bn-6002323d.pth", "vgg13": "vgg13-19584684.pth",
    "vgg13_bn": "vgg13_bn-abd245e5.pth", "vgg16": "vgg16-397923af.pth", "vgg16_bn": "vgg16_bn-6c64b313.pth",
    "vgg19": "vgg19-dcbb9e9d.pth", "vgg19_bn": "vgg19_bn-c79401a0.pth", "resnet18": "resnet18-f37072fd.pth",
    "resnet34": "resnet34-b627a593.pth", "resnet50": "resnet50-11ad3fa6.pth", "alexnet": "alexnet-owt-7be5be79.pth",
    "googlenet": "googlenet-1378be20.pth",
}   # GoogLeNet's auxiliary classifiers (training only)


def _error(msg):
    return WeightsError(msg)


def is_torch_file(path) -> bool:
    """A PyTorch / safetensors state_dict, known from the file's first bytes (a file that cannot be read:
    from its suffix)."""
    from kerascnn.pretrained.base import sniff

    kind = sniff(path)
    return kind in ("safetensors", "torch") or (kind == "unknown" and Path(path).suffix.lower() in SUFFIXES)


def _first(keys, n=3) -> str:
    keys = list(keys)
    more = f" (and {len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


# ------------------------------------------------------------------ reading

def read_state_dict(path) -> dict:
    """``{key: numpy array}`` of a ``.safetensors`` or ``.pth``/``.pt`` state_dict (float tensors as
    float32). A training checkpoint ``{"state_dict": {...}}`` / ``{"model": {...}}`` is unwrapped."""
    path = Path(path)
    if not path.is_file():
        raise _error(f"weight file not found: {path}")
    from kerascnn.pretrained.base import sniff

    kind = sniff(path)
    if kind == "safetensors" or (kind == "unknown" and path.suffix.lower() == ".safetensors"):
        try:
            from safetensors import SafetensorError
            from safetensors.numpy import load_file
        except ImportError:
            raise _error("reading .safetensors needs the safetensors package: pip install safetensors") from None
        from kerascnn.pretrained.limits import check_safetensors

        check_safetensors(path)     # the header's tensors against the file and the memory, before reading
        try:
            raw = load_file(str(path))
        except (SafetensorError, OSError, ValueError, TypeError, KeyError) as e:  # also a dtype numpy lacks (bf16)
            raise _error(f"cannot read {path}: {first_line(e)}") from None
        except AttributeError as e:     # a dtype this numpy has no type for (F8_E4M3 ...)
            raise _error(f"cannot read {path}: a tensor dtype numpy cannot hold ({e.name or e})") from None
    else:
        raw = _read_pth(path)
    out = {}
    for k, v in raw.items():
        v = np.asarray(v)
        out[str(k)] = v.astype(np.float32) if v.dtype.kind == "f" else v
    return out


def _read_pth(path: Path) -> dict:
    try:
        import torch
    except ImportError:
        raise _error("reading .pth needs PyTorch: pip install 'kerascnn[torch]' "
                     "(or convert the file to .safetensors)") from None
    import warnings

    try:
        with warnings.catch_warnings():   # torch warns (TorchScript archives, legacy files) before it refuses
            warnings.simplefilter("ignore")
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:   # noqa: BLE001  UnpicklingError, RuntimeError, KeyError (not a torch file) ...
        what = ("a TorchScript archive" if "TorchScript" in str(e)
                else "not a torch file, or it holds objects other than tensors")
        raise _error(f"cannot read {path} as a PyTorch state_dict: {what} (read with weights_only=True; kerascnn "
                     f"never unpickles anything else)") from None
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise _error(f"{path} is not a PyTorch state_dict (a dict of tensors)")
    return {k: (v.float() if v.is_floating_point() else v).numpy() for k, v in obj.items()}


# ------------------------------------------------------------------ layouts

def layout_of(keys, source="the file") -> str:
    """The torchvision family a state_dict's key names belong to, or one clear refusal naming ``source``."""
    order = [k for k in keys if not k.endswith(("num_batches_tracked", "running_mean", "running_var"))]
    keys = set(keys)
    if "conv1.weight" in keys and "bn1.weight" in keys and any(k.startswith("layer1.0.") for k in keys):
        return "resnet"
    if "conv1.conv.weight" in keys and "inception3a.branch1.conv.weight" in keys:
        return "googlenet"
    if "features.0.weight" in keys:
        return "alexnet" if "classifier.1.weight" in keys else "vgg"
    raise _error(f"{source} is not a torchvision VGG/ResNet/AlexNet/GoogLeNet state_dict (keys {_first(order)}); "
                 f"timm checkpoints load only where they use torchvision's ResNet names "
                 f"(conv1, bn1, layer1.0.conv1, fc)")


def _family(model_name: str) -> str:
    for fam in ("resnet", "vgg", "alexnet", "googlenet"):
        if model_name.startswith(fam):
            return fam
    return model_name


def _sequential_keys(model) -> dict:
    """VGG / AlexNet: kerascnn layer name -> torchvision module path, by walking the layers as
    torchvision's ``features`` / ``classifier`` Sequentials count their modules (a conv with a fused
    ReLU is two modules there)."""
    out, seq, i = {}, "features", 0
    for layer in model.layers:
        cls = type(layer).__name__
        if cls == "Flatten":
            seq, i = "classifier", 0
            continue
        if cls in ("Conv2D", "Dense", "BatchNormalization"):
            out[layer.name] = f"{seq}.{i}"
            i += 1
            if getattr(layer, "activation", None) is not None and layer.activation.__name__ == "relu":
                i += 1
        elif cls in ("Activation", "MaxPooling2D", "Dropout"):
            i += 1
        elif cls in ("AveragePooling2D", "ZeroPadding2D", "NegInfPadding2D", "ImagenetPreprocess"):
            continue   # torchvision's adaptive avgpool sits outside the Sequentials; pads are inside convs
        else:
            raise _error(f"{model.name}: layer {layer.name!r} ({cls}) has no torchvision counterpart")
    return out


_RESNET = re.compile(r"^conv(\d)_block(\d+)_(\d)_(conv|bn)$")


def _resnet_key(name: str):
    if name == "conv1_conv":
        return "conv1"
    if name == "conv1_bn":
        return "bn1"
    if name == "predictions":
        return "fc"
    m = _RESNET.match(name)
    if not m:
        return None
    stage, block, k, kind = int(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4)
    base = f"layer{stage - 1}.{block - 1}"
    if k == 0:
        return f"{base}.downsample.{0 if kind == 'conv' else 1}"
    return f"{base}.{kind}{k}"


def _googlenet_key(name: str):
    if name.startswith("inception"):   # inception3a_1_branch2_0_conv -> inception3a.branch2.0.conv
        block, _, rest = name.split("_", 2)
        return f"{block}.{rest.replace('_', '.')}"
    return name.replace("_", ".")


# ------------------------------------------------------------------ conversion

def _targets(model, family):
    """[(layer, torch module path)] for every weighted layer of ``model``, in order."""
    layers = weighted_layers(model)
    if family in ("vgg", "alexnet"):
        paths = _sequential_keys(model)
        return [(layer, paths.get(name)) for name, layer in layers]
    if family == "resnet":
        return [(layer, _resnet_key(name)) for name, layer in layers]
    return [(layer, _googlenet_key(name)) for name, layer in layers]


def _flatten_input(model, dense):
    """(H, W, C) of the map a Flatten turns into ``dense``'s input (dropouts between skipped), or None."""
    layers = list(model.layers)
    if dense not in layers:
        return None
    i = layers.index(dense) - 1
    while i >= 0 and type(layers[i]).__name__ == "Dropout":
        i -= 1
    if i < 0 or type(layers[i]).__name__ != "Flatten":
        return None
    shape = tuple(layers[i].input.shape[1:])
    return shape if len(shape) == 3 else None


def _names(layer):
    """The state_dict suffixes of ``layer``'s weights, in Keras's weight order."""
    cls = type(layer).__name__
    if cls in ("Conv2D", "Dense"):
        return ["weight", "bias"] if layer.use_bias else ["weight"]
    if cls == "BatchNormalization":
        return ["weight", "bias", "running_mean", "running_var"]
    raise _error(f"layer {layer.name!r} ({cls}) has no torchvision counterpart")


def _torch_shapes(layer) -> list:
    """The PyTorch shapes that convert to ``layer``'s Keras weight shapes."""
    shapes = [tuple(w.shape) for w in layer.weights]
    cls = type(layer).__name__
    if cls == "Conv2D":      # HWIO <- OIHW
        h, w, i, o = shapes[0]
        shapes[0] = (o, i, h, w)
    elif cls == "Dense":     # (in, out) <- (out, in)
        shapes[0] = shapes[0][::-1]
    return shapes


def _convert(model, layer, values: list) -> list:
    """PyTorch arrays -> ``layer``'s Keras weights (the shapes were checked by ``_torch_shapes``)."""
    cls = type(layer).__name__
    values = list(values)
    if cls == "Conv2D":
        values[0] = values[0].transpose(2, 3, 1, 0)
    elif cls == "Dense":
        w = values[0]
        hwc = _flatten_input(model, layer)
        if hwc is not None:   # PyTorch flattened (C, H, W); Keras flattens (H, W, C)
            h, wd, c = hwc
            w = w.reshape(w.shape[0], c, h, wd).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
        values[0] = w.T
    return [np.ascontiguousarray(v, dtype=np.float32) for v in values]


def check_variant(model_name: str, options: dict | None, layout: str, source, sd: dict | None = None):
    """One line naming the model or option when ``model_name`` is not built as the source's architecture:
    another family, another depth (a ResNet-50 file into resnet18), or another ``-o variant``."""
    from kerascnn.registry import get_entry, is_model

    if is_model(model_name) and get_entry(model_name).kind == "keras":
        raise _error(f"{source} holds a torchvision {layout} state_dict; {model_name} is "
                     f"{get_entry(model_name).source}, which loads Keras weight files (torchvision's load into "
                     f"kerascnn's own {layout} models)")
    if _family(model_name) != layout:
        raise _error(f"{source} holds a torchvision {layout} state_dict; {model_name} is not a {layout} "
                     f"(pick a {layout} model)")
    if sd is not None:
        _check_depth(model_name, layout, sd, source)
    if options is None or model_name not in VARIANT:
        return
    key, ok = VARIANT[model_name]
    if str(options.get(key, "paper" if model_name != "resnet50" else "v1.5")).lower() not in ok:
        raise _error(f"{source} is torchvision's {model_name}: build it with -o {key}={ok[-1]}")


TORCHVISION_RESNETS = {(False, (2, 2, 2, 2)): "resnet18", (False, (3, 4, 6, 3)): "resnet34",
                       (True, (3, 4, 6, 3)): "resnet50", (True, (3, 4, 23, 3)): "resnet101",
                       (True, (3, 8, 36, 3)): "resnet152"}
VGG_CONVS = {8: "vgg11", 10: "vgg13", 13: "vgg16", 16: "vgg19"}


def _resnet_depth(sd: dict) -> tuple:
    """(bottleneck, blocks per stage) of a ResNet state_dict."""
    blocks = []
    for stage in range(1, 5):
        ids = {int(k.split(".")[1]) for k in sd if k.startswith(f"layer{stage}.") and k.split(".")[1].isdigit()}
        blocks.append(max(ids) + 1 if ids else 0)
    return any(k.startswith("layer1.0.conv3.") for k in sd), tuple(blocks)


def _check_depth(model_name: str, layout: str, sd: dict, source) -> None:
    if layout == "resnet":
        from kerascnn.models.resnet import RESNET_STAGES

        if model_name not in RESNET_STAGES:
            return
        have, want = _resnet_depth(sd), RESNET_STAGES[model_name]
        if have != tuple(want):
            kind = lambda b: "bottleneck" if b else "basic"
            name = TORCHVISION_RESNETS.get(have, "a ResNet kerascnn does not build")
            raise _error(f"{source} is a ResNet of {kind(have[0])} blocks {have[1]} ({name}); {model_name} has "
                         f"{kind(want[0])} blocks {tuple(want[1])}: another depth (use {name})")
    elif layout == "vgg":
        convs = sum(1 for k, v in sd.items() if k.startswith("features.") and k.endswith(".weight")
                    and getattr(v, "ndim", len(getattr(v, "shape", ()))) == 4)
        bn = any(k.startswith("features.") and k.endswith("running_mean") for k in sd)
        have = VGG_CONVS.get(convs, f"a VGG with {convs} convolutions") + ("_bn" if bn and convs in VGG_CONVS else "")
        if have != model_name and model_name.startswith("vgg"):
            raise _error(f"{source} is {have} ({convs} convolutions{', BatchNorm' if bn else ''}); {model_name} "
                         f"is another depth or BatchNorm variant (use {have})")


def file_classes(sd: dict, layout: str):
    """The number of classes of the state_dict's classifier, or None when it has none."""
    if layout in ("resnet", "googlenet"):
        w = sd.get("fc.weight")
    else:
        heads = [k for k in sd if k.startswith("classifier.") and k.endswith(".weight")]
        w = sd[max(heads, key=lambda k: int(k.split(".")[1]))] if heads else None
    return int(w.shape[0]) if w is not None and len(w.shape) == 2 else None


def timm_config(path) -> dict | None:
    """The ``pretrained_cfg`` of a timm checkpoint: the ``config.json`` the Hugging Face Hub keeps beside
    ``model.safetensors`` / ``pytorch_model.bin`` (timm's ``push_to_hf_hub`` / ``save_for_hf`` write it),
    or None when there is none."""
    import json

    f = Path(path).parent / "config.json"
    try:
        if not f.is_file() or f.stat().st_size > 1 << 20:
            return None
        cfg = json.loads(f.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    if isinstance(cfg, dict) and isinstance(cfg.get("pretrained_cfg"), dict):
        return cfg["pretrained_cfg"]
    return None


# torchvision checkpoints whose evaluation transform is not ImageClassification's default (resize 256),
# by the first 8 hex digits of the file's SHA-256 (torchvision names its files by them)
KNOWN_RESIZE = {"11ad3fa6": 232}   # resnet50 IMAGENET1K_V2: ImageClassification(crop_size=224, resize_size=232)


def known_resize(path) -> int | None:
    """The resize of a torchvision checkpoint recognised by its content (SHA-256), or None."""
    import hashlib

    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
    except OSError:
        return None
    return KNOWN_RESIZE.get(h.hexdigest()[:8])


def load_state_dict(model, source, sd: dict, model_name: str | None = None, options: dict | None = None,
                    dry_run: bool = False):
    """Set ``model``'s weights from the torchvision state_dict ``sd`` (as ``read_state_dict`` gives).
    Returns a ``kerascnn.pretrained.LoadReport``; raises one ``WeightsError`` and changes nothing if the
    file does not fit. Every key and shape is checked before any array is converted; ``dry_run``
    stops there (``sd`` may then hold anything with a ``.shape``)."""
    model_name = model_name or model.name
    layout = layout_of(sd, source)
    check_variant(model_name, options, layout, source, sd)
    hint = ""
    if model_name in VARIANT:
        key, ok = VARIANT[model_name]
        hint = f" (torchvision's {model_name} needs -o {key}={ok[-1]})"
    eps = 1e-3 if layout == "googlenet" else TORCH_BN_EPSILON
    targets = _targets(model, layout)
    unmapped = [layer.name for layer, path in targets if path is None]
    if unmapped:
        raise _error(f"{source}: {model.name}'s layer(s) {_first(unmapped)} have no torchvision "
                     f"counterpart{hint}")
    used, plan, report, missing = set(), [], LoadReport(), []
    last = targets[-1][0] if targets else None
    new_head = False   # set at a first dense layer sized for another input: the classifier starts fresh
    for layer, prefix in targets:
        if type(layer).__name__ == "BatchNormalization" and abs(float(layer.epsilon) - eps) > 1e-12:
            raise _error(f"{model.name}: layer {layer.name!r} has BatchNorm epsilon {layer.epsilon:g}; "
                         f"the source's is {eps:g}{hint}")
        keys = [f"{prefix}.{n}" for n in _names(layer)]
        if type(layer).__name__ == "BatchNormalization":
            used.add(f"{prefix}.num_batches_tracked")
        absent = [k for k in keys if k not in sd]
        used.update(k for k in keys if k in sd)
        if absent:
            if layer is last and len(absent) == len(keys):   # a headless file: the classifier stays fresh
                report.fresh.append(layer.name)
            else:
                missing += absent
            continue
        got, want = [tuple(sd[k].shape) for k in keys], _torch_shapes(layer)
        if got != want and not new_head and type(layer).__name__ == "Dense" and _flatten_input(model, layer):
            new_head = True   # VGG/AlexNet at another input size: fc1 sees another map (the _notop case)
        if new_head or got != want:
            if new_head or layer is last:   # a classifier for other classes / another input size: new
                report.fresh.append(layer.name)
                continue
            bad = next(i for i, (g, w) in enumerate(zip(got, want)) if g != w)
            raise _error(f"{source}: {keys[bad]} has shape {got[bad]}, {model.name}'s {layer.name!r} needs "
                         f"{want[bad]} (another width, input size or variant?){hint}")
        plan.append((layer, keys))
        report.loaded.append(layer.name)
    if missing:
        raise _error(f"{source} has no {_first(missing)} for {model.name}{hint}")
    ignored = sorted({k.split(".")[0] for k in sd if k.startswith(IGNORED_PREFIXES)})
    unknown = [k for k in sd if k not in used and not k.startswith(IGNORED_PREFIXES)
               and not k.endswith("num_batches_tracked")]
    if unknown:
        raise _error(f"{source}: tensors {_first(unknown)} are not used by {model.name}{hint}")
    if not dry_run:
        converted = [(layer, _convert(model, layer, [sd[k] for k in keys])) for layer, keys in plan]
        for layer, values in converted:
            layer.set_weights(values)
    report.ignored = [f"{p} (auxiliary head)" for p in ignored]
    return report
