"""Memory guard: refuse a model/input/batch combination that cannot fit, before allocating it.

The estimate comes from the pure-Python analysis (no TensorFlow):

* training: weights + gradients + optimizer slots (float32), plus every layer's
  activations for the whole batch kept for back-propagation, and as much again
  for their gradients;
* inference: weights, plus the two largest consecutive activations for the batch.

It is deliberately simple (frameworks add workspace, XLA may fuse), so the
guard only refuses what is clearly out of reach: more than the machine's
available memory (``/proc/meminfo`` MemAvailable, or ``KERASCNN_MEMORY_LIMIT``
in bytes / with a K, M, G suffix).
"""
from __future__ import annotations

import os
import re

from kerascnn.analysis import Report, human_bytes, walk
from kerascnn.errors import MemoryGuardError

OPTIMIZER_SLOTS = {"sgd": 1, "adam": 2, "adamw": 2}


def available_bytes() -> int:
    env = os.environ.get("KERASCNN_MEMORY_LIMIT")
    if env:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?)i?B?\s*", env, re.I)
        if m:
            return int(float(m.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[m.group(2).upper()])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def training_bytes(report: Report, batch_size: int, optimizer: str = "adam") -> int:
    slots = OPTIMIZER_SLOTS.get(optimizer, 2)
    weights = report.param_bytes * (2 + slots)
    activations = sum(l.activation_bytes for l in walk(report.layers) if not l.children)
    return weights + 2 * batch_size * activations


def inference_bytes(report: Report, batch_size: int) -> int:
    sizes = [l.activation_bytes for l in report.layers] or [0]
    peak = max(a + b for a, b in zip([0] + sizes, sizes + [0]))
    return report.param_bytes + batch_size * peak


def check(report: Report, batch_size: int, mode: str = "train", optimizer: str = "adam", what: str = "model"):
    """Raise MemoryGuardError when the estimate exceeds the available memory."""
    need = training_bytes(report, batch_size, optimizer) if mode == "train" else inference_bytes(report, batch_size)
    have = available_bytes()
    if need > have:
        shape = "x".join(map(str, report.input_shape))
        raise MemoryGuardError(
            f"{what} at {shape} with batch {batch_size} needs about {human_bytes(need)} for {mode} "
            f"({report.total_params:,} params, {human_bytes(report.activation_bytes)} of activations per image) "
            f"but only {human_bytes(have)} is available; use a smaller --batch-size or --image-size")
    return need
