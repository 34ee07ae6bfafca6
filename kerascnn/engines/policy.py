"""Device, precision and XLA policy for a training run, and the start-up line that reports them."""
from __future__ import annotations

import platform

import numpy as np


def versions() -> dict:
    import keras

    from kerascnn._version import __version__

    out = {"python": platform.python_version(), "keras": keras.__version__, "backend": keras.backend.backend(),
           "numpy": np.__version__, "kerascnn": __version__}
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        out["tensorflow"] = tf.__version__
    return out


def precision_for(info, requested, report):
    """The Keras dtype policy: as asked, else per device (bf16 from compute capability 8.0, fp16
    from 7.0) and, on a CPU, bf16 only with native bf16 and a model wide enough to gain."""
    if requested:
        return requested
    if info.device_type == "GPU":
        import tensorflow as tf

        details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
        cc = details.get("compute_capability", (0, 0))
        return "mixed_bfloat16" if cc >= (8, 0) else "mixed_float16" if cc >= (7, 0) else "float32"
    return "mixed_bfloat16" if cpu_has_bf16() and wide_mac_fraction(report) >= 0.5 else "float32"


def wide_mac_fraction(report, min_channels: int = 32) -> float:
    """Share of the multiply-adds done by layers with at least ``min_channels`` outputs.

    On a CPU, bfloat16 pays only where the dot products are wide enough for the AVX512-BF16
    kernels to beat the cost of the casts around them: the lecture convnet (32/64 channels, 96 %
    of its MACs) trains 1.5-1.8x faster in mixed_bfloat16; LeNet-5 (6/16 channels, 14 %) gains
    nothing (0.6x-1.0x depending on the thread settings; 2 cores, batch 128, benchmarks/RESULTS.md)."""
    from kerascnn.analysis import walk

    leaves = [l for l in walk(report.layers) if not l.children and l.macs]
    total = sum(l.macs for l in leaves)
    return sum(l.macs for l in leaves if l.output_shape[-1] >= min_channels) / total if total else 0.0


from kerascnn.cpu import cpu_has_bf16  # noqa: E402,F401  (one home: kerascnn/cpu.py)

# Mixed bf16 on a GPU pays once a step has enough arithmetic per image for the tensor cores to
# matter more than the casts and the per-step host overhead. Measured on an H100 (issue 11, batch
# 256): the small nets -- lecture convnet 2.5 M and LeNet-5 0.42 M multiply-adds per image, 6-64
# channels -- train fastest in float32 (on TF32 tensor cores), ResNet-18 at 32x32 (0.56 G), ResNet-50
# and VGG-16 at 224 (4.1 G, 15.5 G) in bf16. The threshold sits between the two groups (log-midway
# is ~37 M; 100 M keeps any doubtful middle in float32, which is never slower than emulation-free bf16
# by more than its cast overhead) and half of the MACs must be in layers with >= 64 channels.
GPU_BF16_MIN_MACS = 100_000_000
GPU_BF16_MIN_CHANNELS = 64


def compute_capability(device):
    """(major, minor) of a JAX CUDA device (``device.compute_capability`` is '9.0'), else None."""
    cc = getattr(device, "compute_capability", None)
    if not cc:
        return None
    try:
        major, _, minor = str(cc).partition(".")
        return int(major), int(minor or 0)
    except ValueError:
        return None


def gpu_bf16_pays(report) -> bool:
    """Whether mixed bf16 is expected to beat float32 (TF32) for this model on a bf16 tensor-core
    GPU: enough multiply-adds per image, mostly in wide layers (see GPU_BF16_MIN_MACS)."""
    return (report.macs >= GPU_BF16_MIN_MACS
            and wide_mac_fraction(report, GPU_BF16_MIN_CHANNELS) >= 0.5)


def jax_precision_for(devices, requested, report) -> str:
    """The JAX engine's Keras dtype policy: as asked; on CUDA GPUs of compute capability 8.0+
    (bf16 tensor cores) mixed_bfloat16 where ``gpu_bf16_pays``, else float32 (run on TF32 there);
    float32 on CPUs (XLA:CPU has no fast bf16 convolutions) and on older GPUs."""
    if requested:
        return requested
    dev = devices[0] if devices else None
    if dev is None or getattr(dev, "platform", "cpu") != "gpu":
        return "float32"
    cc = compute_capability(dev)
    return "mixed_bfloat16" if cc and cc >= (8, 0) and gpu_bf16_pays(report) else "float32"


def uses_tf32(devices, precision: str) -> bool:
    """float32 on a CUDA GPU of compute capability 8.0+: JAX runs its matmuls and convolutions on
    the TF32 tensor cores by default (``jax_default_matmul_precision`` unset)."""
    dev = devices[0] if devices else None
    cc = compute_capability(dev) if dev is not None and getattr(dev, "platform", "") == "gpu" else None
    return precision == "float32" and bool(cc) and cc >= (8, 0)


def jit_for(info, requested, echo) -> bool:
    """XLA: as asked, else on for one GPU; off on CPU (measured slower) and under MirroredStrategy."""
    jit = requested if requested is not None else (info.device_type == "GPU" and info.kind in ("default", "onedevice"))
    if jit and info.kind == "mirrored":
        echo("note: XLA (--jit) is turned off under MirroredStrategy (it fails in several Keras releases)")
        jit = False
    return bool(jit)


def describe_strategy(info) -> str:
    """``strategy KIND (Class), N replica(s) on DEVICES``; a private class name (TensorFlow's
    ``_DefaultDistributionStrategy``) is not shown."""
    cls = type(info.strategy).__name__
    shown = f" ({cls})" if not cls.startswith("_") else ""
    return (f"strategy {info.kind}{shown}, {info.replicas} replica(s) on {', '.join(info.devices)}"
            + ("" if info.task == "chief" else f", task {info.task}"))
