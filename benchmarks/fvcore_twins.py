"""fvcore's multiply-add count of the PyTorch twin of each keras.applications model (run with PyTorch).

Run in an environment with torch, torchvision, timm and fvcore (no TensorFlow needed)::

    /work/torchenv/bin/python benchmarks/fvcore_twins.py            # writes tests/fixtures/fvcore_twins.json

A twin is torchvision's or timm's model of the same architecture at the Keras model's input size, built
with random weights. Counted: fvcore's handles for convolutions, linear layers and matrix products
(``conv``, ``linear``, ``addmm``, ``matmul``, ``bmm``, ``einsum``), which count one multiply-add per
weight per output position, as kerascnn does; fvcore's counts for normalization, pooling and
up-sampling (one per element) are recorded apart, since kerascnn counts those layers as 0.
``benchmarks/keras_applications.py`` compares kerascnn's count with these.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import fvcore
import timm
import torch
import torchinfo
import torchvision
from fvcore.nn import FlopCountAnalysis
from torchvision import models as tv

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "fvcore_twins.json"
MAC_OPS = {"conv", "linear", "addmm", "matmul", "bmm", "einsum", "mm"}


def resnet_v1(name):
    """torchvision's ResNet ("v1.5": stride on the 3x3) with the stride moved to the first 1x1, as
    Keras's ResNet50/101/152 (He et al.'s v1); MACs differ from torchvision's own by the 3x3's."""
    m = getattr(tv, name)()
    for layer in (m.layer2, m.layer3, m.layer4):
        block = layer[0]
        block.conv1.stride, block.conv2.stride = block.conv2.stride, (1, 1)
    return m


def _tv(name, **kw):
    return lambda: getattr(tv, name)(**kw)


def _timm(name):
    return lambda: timm.create_model(name, pretrained=False)


# keras.applications name -> (twin description, builder, input size)
TWINS = {
    "VGG16": ("torchvision vgg16", _tv("vgg16"), 224),
    "VGG19": ("torchvision vgg19", _tv("vgg19"), 224),
    "ResNet50": ("torchvision resnet50, stride moved to the first 1x1 (v1, as Keras)", lambda: resnet_v1("resnet50"), 224),
    "ResNet101": ("torchvision resnet101, stride moved to the first 1x1 (v1, as Keras)",
                  lambda: resnet_v1("resnet101"), 224),
    "ResNet152": ("torchvision resnet152, stride moved to the first 1x1 (v1, as Keras)",
                  lambda: resnet_v1("resnet152"), 224),
    "InceptionV3": ("torchvision inception_v3 (aux_logits=False)",
                    _tv("inception_v3", aux_logits=False, init_weights=False), 299),
    "InceptionResNetV2": ("timm inception_resnet_v2", _timm("inception_resnet_v2"), 299),
    "Xception": ("timm legacy_xception", _timm("legacy_xception"), 299),
    "MobileNet": ("timm mobilenetv1_100", _timm("mobilenetv1_100"), 224),
    "MobileNetV2": ("torchvision mobilenet_v2", _tv("mobilenet_v2"), 224),
    "MobileNetV3Small": ("torchvision mobilenet_v3_small", _tv("mobilenet_v3_small"), 224),
    "MobileNetV3Large": ("torchvision mobilenet_v3_large", _tv("mobilenet_v3_large"), 224),
    "DenseNet121": ("torchvision densenet121", _tv("densenet121"), 224),
    "DenseNet169": ("torchvision densenet169", _tv("densenet169"), 224),
    "DenseNet201": ("torchvision densenet201", _tv("densenet201"), 224),
    "NASNetLarge": ("timm nasnetalarge", _timm("nasnetalarge"), 331),
    **{f"EfficientNetB{i}": (f"torchvision efficientnet_b{i}", _tv(f"efficientnet_b{i}"), size)
       for i, size in enumerate((224, 240, 260, 300, 380, 456, 528, 600))},
    **{f"EfficientNetV2B{i}": (f"timm tf_efficientnetv2_b{i}", _timm(f"tf_efficientnetv2_b{i}"), size)
       for i, size in enumerate((224, 240, 260, 300))},
    "EfficientNetV2S": ("torchvision efficientnet_v2_s", _tv("efficientnet_v2_s"), 384),
    "EfficientNetV2M": ("torchvision efficientnet_v2_m", _tv("efficientnet_v2_m"), 480),
    "EfficientNetV2L": ("torchvision efficientnet_v2_l", _tv("efficientnet_v2_l"), 480),
    "ConvNeXtTiny": ("torchvision convnext_tiny", _tv("convnext_tiny"), 224),
    "ConvNeXtSmall": ("torchvision convnext_small", _tv("convnext_small"), 224),
    "ConvNeXtBase": ("torchvision convnext_base", _tv("convnext_base"), 224),
    "ConvNeXtLarge": ("torchvision convnext_large", _tv("convnext_large"), 224),
    "ConvNeXtXLarge": ("timm convnext_xlarge", _timm("convnext_xlarge"), 224),
}
NO_TWIN = {
    "ResNet50V2": "Keras's v2 strides at the end of each stage (timm's resnetv2_50 at the start)",
    "ResNet101V2": "as ResNet50V2", "ResNet152V2": "as ResNet50V2",
    "NASNetMobile": "neither torchvision nor timm has NASNet-A Mobile",
}


def count(name: str) -> dict:
    what, build, size = TWINS[name]
    torch.manual_seed(0)
    model = build().eval()
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        fca = FlopCountAnalysis(model, x)
        fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        ops = fca.by_operator()
    macs = sum(v for k, v in ops.items() if k in MAC_OPS)
    return {"twin": what, "input": [size, size, 3], "fvcore_macs": int(macs),
            "fvcore_other": {k: int(v) for k, v in sorted(ops.items()) if k not in MAC_OPS},
            "twin_params": int(sum(p.numel() for p in model.parameters()))}


def main(names):
    old = json.loads(OUT.read_text()) if OUT.exists() else {}
    twins = old.get("twins", {})
    for name in names or TWINS:
        t = time.time()
        twins[name] = count(name)
        print(f"{name:18s} {twins[name]['fvcore_macs']:>16,}  {twins[name]['twin']}  ({time.time() - t:.1f} s)",
              flush=True)
        OUT.write_text(json.dumps(_doc(twins), indent=1) + "\n")


def _doc(twins):
    return {"versions": {"torch": torch.__version__, "torchvision": torchvision.__version__, "timm": timm.__version__,
                         "fvcore": getattr(fvcore, "__version__", "0.1.5"), "torchinfo": torchinfo.__version__},
            "counted": sorted(MAC_OPS), "no_twin": NO_TWIN, "twins": dict(sorted(twins.items()))}


if __name__ == "__main__":
    main(sys.argv[1:])
