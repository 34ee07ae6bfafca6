"""Device, precision and XLA policy for a training run, and the start-up line that reports them."""
from __future__ import annotations

import platform

import numpy as np


def versions() -> dict:
    import keras

    import kerascnn

    out = {"python": platform.python_version(), "keras": keras.__version__, "backend": keras.backend.backend(),
           "numpy": np.__version__, "kerascnn": kerascnn.__version__}
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
