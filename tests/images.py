"""The image files and class folders the tests write: one module of makers instead of one per test file.

Pixels are a pure function of the arguments (seeded NumPy generators), so a maker called twice
writes the same files, in any process. Sizes are Pillow's ``(width, height)``; folders are created
as needed and every maker returns the folder (or the array) it wrote.

- ``save_image``: one array as an image file.
- ``random_image``: one file of random (or constant) pixels, in any Pillow mode.
- ``random_folder``: class folders of random images (PNG or JPEG, gray or colour).
- ``digits_folder``: class folders of scikit-learn's 8x8 digits (learnable), optionally with a few
  files in other modes and sizes.
- ``labelled_folder``: class folders of given arrays and labels.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def save_image(path, array, mode: str | None = None, **save_kw) -> np.ndarray:
    """Write one uint8 array (H x W gray, H x W x 3 colour) as an image file, its folder created;
    ``mode`` converts the image first (``"L"``, ``"P"``, ``"RGBA"``, ...)."""
    image = Image.fromarray(array)
    _save(image if mode in (None, image.mode) else image.convert(mode), path, **save_kw)
    return array


def random_image(path, size=(8, 8), mode: str = "L", value: int | None = None, seed: int = 0) -> np.ndarray:
    """One image of ``size`` whose bytes are random (or all ``value``), read by Pillow as ``mode``
    (for ``"P"``, palette indices); returns the array written."""
    rng = np.random.default_rng(seed)
    shape = size[::-1] + ((3,) if mode == "RGB" else ())
    a = rng.integers(0, 256, shape, dtype=np.uint8) if value is None else np.full(shape, value, np.uint8)
    _save(Image.fromarray(a, mode), path)
    return a


def _save(image, path, **save_kw) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **save_kw)


def _class_names(classes) -> list:
    """``classes`` as folder names: a count ``k`` means ``c0`` .. ``c{k-1}``."""
    return [f"c{k}" for k in range(classes)] if isinstance(classes, int) else list(classes)


def random_folder(root, classes=("a", "b"), per_class: int = 5, size=(16, 16), mode: str = "L",
                  ext: str = "png", seed: int = 0, name: str = "{i}", **save_kw) -> Path:
    """``root/CLASS/NAME.EXT`` of random pixels, drawn class by class from one generator: gray
    (``mode="L"``) or colour, converted to any other ``mode`` before saving (JPEG ``quality`` etc.
    in ``save_kw``)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for c in _class_names(classes):
        for i in range(per_class):
            shape = size[::-1] + (() if mode == "L" else (3,))
            a = rng.integers(0, 256, shape, dtype=np.uint8)
            save_image(root / c / f"{name.format(i=i)}.{ext}", a, mode, **save_kw)
    return root


def digits_folder(root, classes: int = 2, per_class: int = 16, odd_modes: bool = False) -> Path:
    """``root/c{k}/NNN.png``: the first ``per_class`` 8x8 digits ``k`` of scikit-learn's set, gray;
    with ``odd_modes`` the first four of each class are RGBA, palette, 16-bit gray and 10x10."""
    from sklearn.datasets import load_digits

    d = load_digits()
    root = Path(root)
    for k in range(classes):
        (root / f"c{k}").mkdir(parents=True, exist_ok=True)
        for i, a in enumerate(d.images[d.target == k][:per_class]):
            a8 = np.round(a * 255 / 16).astype(np.uint8)
            im = Image.fromarray(a8, "L")
            if odd_modes and i == 0:
                im = im.convert("RGBA")
            elif odd_modes and i == 1:
                im = im.convert("P")
            elif odd_modes and i == 2:
                im = Image.fromarray(a8.astype(np.uint16) * 257).convert("I;16")
            elif odd_modes and i == 3:
                im = im.resize((10, 10))
            im.save(root / f"c{k}" / f"{i:03d}.png")
    return root


def labelled_folder(root, images, labels, classes, name: str = "{i:03d}", ext: str = "png") -> Path:
    """``root/CLASS/NAME.EXT`` for each uint8 array and its label (an index into ``classes``),
    numbered in the order given."""
    root = Path(root)
    names = _class_names(classes)
    for i, (a, label) in enumerate(zip(images, labels)):
        save_image(root / names[int(label)] / f"{name.format(i=i)}.{ext}", a)
    return root
