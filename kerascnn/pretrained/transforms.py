"""How a photo becomes a pretrained model's input, as the weights' source library does it.

Two parts, kept apart because only one of them can live in a graph:

* the **evaluation transform** (``EvalTransform``): resize and centre crop, done on the decoded
  8-bit image with PIL, exactly as the source does it for PIL images, so the pixels are the
  source's to the last bit (a resize in TensorFlow's graph would not be: its antialiasing
  differs from PIL's). It runs in ``predict``/``evaluate`` and is recorded in an export's
  ``kerascnn.json`` (``kerascnn predict`` on the export applies it; other serving code must);
* the **normalisation**: ``ImagenetPreprocess`` (``kerascnn.layers``), a layer inside the model,
  so the run's ``.keras`` files and the exported SavedModel carry it.

The sources:

* torchvision ``ImageClassification`` (every ``<Model>_Weights.IMAGENET1K_*.transforms()`` of
  the families kerascnn loads): resize the shorter side to 256 (232 for ResNet-50's V2
  weights), bilinear, centre-crop 224, ``x/255``, ``(x - mean)/std``;
* timm ``create_transform(**resolve_model_data_config(model))``: shorter side to
  ``floor(size / crop_pct)`` with the ``pretrained_cfg``'s interpolation (``crop_mode``
  ``center``; ``squash`` resizes both edges), centre crop, its mean/std;
* keras.applications, Keras's own example pipeline: ``keras.utils.load_img(path,
  target_size=(H, W))`` squashes the whole photo to the input size with *nearest* neighbour
  (its default), then the architecture's ``preprocess_input``.

A model trained by kerascnn keeps kerascnn's own pipeline (the whole image squashed, bilinear
with antialiasing, ``kerascnn.data.prepare_images``): the one it was trained on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCHVISION_RESIZE = 256          # ImageClassification's resize_size for crop_size 224
TIMM_DEFAULT_CROP_PCT = 0.875


def _resample(name: str):
    from PIL import Image

    return {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}[name]


def shorter_side_size(h: int, w: int, shorter: int) -> tuple:
    """(new H, new W) with the shorter side ``shorter``: torchvision's ``_compute_resized_output_size``
    (the longer side truncated: ``int(shorter * long / short)``)."""
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = shorter, int(shorter * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    return new_h, new_w


@dataclass(frozen=True)
class EvalTransform:
    """Resize, then centre-crop to ``size`` (H, W), on the decoded 8-bit image with PIL.

    ``resize``: an int is the shorter side (aspect kept, torchvision's ``Resize(int)``); a pair
    (H, W) resizes both edges (a squash). PIL antialiases bilinear and bicubic when it shrinks,
    as torchvision and timm get it for PIL images. The crop pads with zeros where the resized
    image is smaller (torchvision's ``center_crop``)."""

    size: tuple
    resize: Union[int, tuple]
    interpolation: str = "bilinear"
    source: str = "torchvision"

    def __post_init__(self):
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}; "
                             f"received {self.interpolation!r}")
        object.__setattr__(self, "size", tuple(int(v) for v in self.size))
        if not isinstance(self.resize, int):
            object.__setattr__(self, "resize", tuple(int(v) for v in self.resize))

    def describe(self) -> str:
        h, w = self.size
        if isinstance(self.resize, int):
            return (f"shorter side to {self.resize} ({self.interpolation}, PIL), centre crop {h}x{w}")
        if tuple(self.resize) == tuple(self.size):
            return f"whole image to {h}x{w} ({self.interpolation}, PIL)"
        return f"resize to {self.resize[0]}x{self.resize[1]} ({self.interpolation}, PIL), centre crop {h}x{w}"

    def to_dict(self) -> dict:
        return {"size": list(self.size), "resize": self.resize if isinstance(self.resize, int) else list(self.resize),
                "interpolation": self.interpolation, "source": self.source}

    @classmethod
    def from_dict(cls, d) -> Optional["EvalTransform"]:
        """The transform a ``to_dict`` wrote, or None for anything else (an export's kerascnn.json is
        read defensively)."""
        try:
            resize = d["resize"]
            resize = int(resize) if isinstance(resize, (int, float)) else tuple(int(v) for v in resize)
            return cls(tuple(int(v) for v in d["size"]), resize, str(d.get("interpolation", "bilinear")),
                       str(d.get("source", "")))
        except (KeyError, TypeError, ValueError):
            return None

    def apply(self, image: np.ndarray) -> np.ndarray:
        """A decoded uint8 image, (H, W) gray or (H, W, 3) RGB -> uint8 (h, w, 3) at ``size``. Gray is
        repeated to RGB first (PIL's ``convert("RGB")``, what torchvision's and Keras's loaders do)."""
        from PIL import Image

        a = np.asarray(image, dtype=np.uint8)
        if a.ndim == 3 and a.shape[-1] == 1:
            a = a[..., 0]
        if a.ndim == 2:
            a = np.repeat(a[..., None], 3, axis=-1)
        im = Image.fromarray(np.ascontiguousarray(a), "RGB")
        h, w = a.shape[:2]
        new_h, new_w = (shorter_side_size(h, w, self.resize) if isinstance(self.resize, int)
                        else tuple(self.resize))
        if (new_h, new_w) != (h, w):
            im = im.resize((new_w, new_h), _resample(self.interpolation))
        return _centre_crop(np.asarray(im), self.size)

    def load(self, files, scale: float = 1.0 / 255.0) -> np.ndarray:
        """Image files -> float32 (N, H, W, 3): decoded (``kerascnn.data``'s checked reader),
        transformed, times ``scale`` (1/255: the [0, 1] pixels a kerascnn model takes)."""
        from pathlib import Path

        from kerascnn.data.images import _read_image

        out = np.empty((len(files),) + tuple(self.size) + (3,), np.float32)
        for i, f in enumerate(files):
            out[i] = self.apply(_read_image(Path(f)))
        out *= np.float32(scale)
        return out

    def prepare(self, x: np.ndarray, scale: float = 1.0 / 255.0) -> np.ndarray:
        """An in-memory uint8 batch (N, H, W[, C]) -> float32 (N, h, w, 3), each image transformed."""
        out = np.empty((len(x),) + tuple(self.size) + (3,), np.float32)
        for i, image in enumerate(x):
            out[i] = self.apply(image)
        out *= np.float32(scale)
        return out


def _centre_crop(a: np.ndarray, size) -> np.ndarray:
    """torchvision's ``center_crop``: pad with zeros where the image is smaller, then crop at
    ``round((H - h) / 2)``, ``round((W - w) / 2)`` (Python's round, half to even)."""
    ch, cw = size
    h, w = a.shape[:2]
    if ch > h or cw > w:
        top, left = max(ch - h, 0) // 2, max(cw - w, 0) // 2
        bottom, right = max(ch - h, 0) - top, max(cw - w, 0) - left
        # torchvision pads left/top with (d // 2) and right/bottom with ((d + 1) // 2)
        a = np.pad(a, ((top, bottom), (left, right), (0, 0)))
        h, w = a.shape[:2]
    top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
    return np.ascontiguousarray(a[top:top + ch, left:left + cw])


# ------------------------------------------------------------------ the sources' transforms

def torchvision(size, resize: Optional[int] = None) -> EvalTransform:
    """torchvision's ``ImageClassification(crop_size, resize_size)``; at another input than 224 the
    resize scales with it (256/224 of the crop)."""
    h, w = size
    if resize is None:
        resize = TORCHVISION_RESIZE if (h, w) == (224, 224) else int(round(min(h, w) * TORCHVISION_RESIZE / 224))
    return EvalTransform((h, w), int(resize), "bilinear", "torchvision")


def timm(size, cfg: dict) -> EvalTransform:
    """timm's ``transforms_imagenet_eval`` for a ``pretrained_cfg`` (``crop_pct``, ``interpolation``,
    ``crop_mode`` center or squash). ``border`` mode is refused by the caller."""
    h, w = size
    crop_pct = float(cfg.get("crop_pct") or TIMM_DEFAULT_CROP_PCT)
    interpolation = str(cfg.get("interpolation") or "bilinear")
    if interpolation not in INTERPOLATIONS:
        interpolation = "bicubic" if interpolation == "random" else "bilinear"
    if (cfg.get("crop_mode") or "center") == "squash":
        resize = (math.floor(h / crop_pct), math.floor(w / crop_pct))
    else:   # center; a non-square input keeps the shorter side's scale
        resize = math.floor(min(h, w) / crop_pct)
    return EvalTransform((h, w), resize, interpolation, "timm")


def keras_applications(size) -> EvalTransform:
    """Keras's ``keras.utils.load_img(path, target_size=size)``: the whole image, nearest neighbour."""
    h, w = size
    return EvalTransform((h, w), (h, w), "nearest", "keras.applications")


# ------------------------------------------------------------------ the whole recipe

@dataclass(frozen=True)
class Preprocessing:
    """What a set of weights needs between a photo and the model: the evaluation transform
    (outside the model; None: kerascnn's own squash) and the normalisation mode of the
    ``ImagenetPreprocess`` layer inside it (None: none), with where that was decided from."""

    mode: Optional[str]
    transform: Optional[EvalTransform]
    origin: str          # keras.applications | torchvision | timm | keras (a kerascnn model's file) | user
    why: str             # how it was decided, one phrase
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD

    def normalisation(self) -> str:
        """The in-graph part in words."""
        if not self.mode or self.mode == "none":
            return "x/255"
        if self.mode == "torch":
            custom = (tuple(self.mean), tuple(self.std)) != (IMAGENET_MEAN, IMAGENET_STD)
            stats = f" (mean {_fmt(self.mean)}, std {_fmt(self.std)})" if custom else ""
            return f"x/255, (x - mean)/std{stats}"
        return {"caffe": "x/255, caffe (BGR, minus the ImageNet means, 0..255)", "tf": "x/255, (x - 0.5)/0.5",
                "raw": "0..255 pixels (the model preprocesses inside)"}.get(self.mode, self.mode)

    def describe(self) -> str:
        """One line: 'torchvision (a torchvision resnet state_dict): shorter side to 256 ..., then in the
        model: x/255, (x - mean)/std'."""
        outside = (self.transform.describe() if self.transform
                   else "whole image to the input size (bilinear, kerascnn's)")
        return f"{self.origin} ({self.why}): {outside}; in the model: {self.normalisation()}"

    def to_dict(self) -> dict:
        out = {"origin": self.origin, "why": self.why, "normalisation": self.mode or "none",
               "in_graph": self.normalisation(),
               "outside_graph": self.transform.to_dict() if self.transform else None}
        if self.mode == "torch":
            out.update(mean=list(self.mean), std=list(self.std))
        return out


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"
