"""``prepare_images``: resize, adapt channels and scale raw images for a model (chunked)."""
from __future__ import annotations

import numpy as np

from kerascnn.data.arrays import _check_fits


def prepare_images(x: np.ndarray, image_size, channels: int, pixel_scale: float, chunk: int = 4096) -> np.ndarray:
    """Resize (bilinear, antialiased when shrinking), adapt channels (gray <-> RGB, luminance for
    RGB -> gray) and scale: float32 (N, H, W, channels). Works in chunks to bound memory; the
    cheaper side of the channel change runs through the resize (gray before RGB expansion)."""
    x = x[..., None] if x.ndim == 3 else x
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(int(v) for v in image_size)
    _check_fits(f"image size {h}x{w}", (len(x), h, w, channels), 4,
                f"{len(x):,} images at {h}x{w}x{channels} in float32", "; use a smaller --image-size (or fewer images)")
    out = np.empty((len(x), h, w, channels), dtype=np.float32)
    scale = np.float32(pixel_scale)
    for i in range(0, len(x), chunk):
        part = x[i:i + chunk].astype(np.float32)
        if part.shape[-1] != channels and channels == 1:  # RGB -> gray before resizing
            part = (part[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
        if part.shape[1:3] != (h, w):
            import tensorflow as tf

            part = tf.image.resize(part, (h, w), method="bilinear",
                                   antialias=bool(part.shape[1] > h or part.shape[2] > w)).numpy()
        part *= scale
        if part.shape[-1] != channels:  # gray -> RGB after resizing
            out[i:i + chunk] = part[..., :1]
        else:
            out[i:i + chunk] = part
    return out
