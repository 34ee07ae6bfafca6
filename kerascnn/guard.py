"""Memory guard: refuse a model/input/batch combination that cannot fit, before allocating it.

The estimate comes from the pure-Python analysis (no TensorFlow):

* training: weights + gradients + optimizer slots (float32), plus every layer's
  activations for the whole batch kept for back-propagation, and as much again
  for their gradients;
* inference: weights, plus the two largest consecutive activations for the batch.

It is deliberately simple (frameworks add workspace, XLA may fuse), so the
guard only refuses what is clearly out of reach: more than the machine's
available memory (``/proc/meminfo`` MemAvailable, or less where this process's memory cgroup,
v1 or v2, or one of its parents, sets a lower limit, as a container or ``systemd-run -p
MemoryMax=`` does, or where ``RLIMIT_AS`` / ``RLIMIT_DATA`` leaves less; or
``KERASCNN_MEMORY_LIMIT`` in bytes / with a K, M, G suffix).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from kerascnn.analysis import Report, human_bytes, walk
from kerascnn.errors import MemoryGuardError

OPTIMIZER_SLOTS = {"sgd": 1, "adam": 2, "adamw": 2}


def available_bytes() -> int:
    env = os.environ.get("KERASCNN_MEMORY_LIMIT")
    if env:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?)i?B?\s*", env, re.I)
        if m:
            return int(float(m.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[m.group(2).upper()])
    have = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    have = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if have is None:
        try:
            have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            have = 1 << 62
    for room in (cgroup_headroom(), rlimit_headroom()):
        if room is not None:
            have = max(0, min(have, room))
    return have


def rlimit_headroom():
    """Bytes this process may still map under ``RLIMIT_AS`` / ``RLIMIT_DATA`` (``ulimit -v``,
    ``prlimit --as``): the limit minus what it maps now (``/proc/self/status`` VmSize / VmData);
    None without such a limit. A process capped at 4 GiB on a 128 GiB machine plans with the cap."""
    try:
        import resource
    except ImportError:
        return None
    best = None
    for limit_name, field in (("RLIMIT_AS", "VmSize:"), ("RLIMIT_DATA", "VmData:")):
        limit = getattr(resource, limit_name, None)
        if limit is None:
            continue
        soft = resource.getrlimit(limit)[0]
        if soft == resource.RLIM_INFINITY or soft < 0:
            continue
        used = 0
        try:
            with open("/proc/self/status") as fh:
                used = next((int(ln.split()[1]) * 1024 for ln in fh if ln.startswith(field)), 0)
        except (OSError, ValueError):
            pass
        room = soft - used
        best = room if best is None else min(best, room)
    return best


CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def _read_int(path: Path):
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None   # "max" (v2, no limit) -> None


def _stat_value(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def cgroup_headroom():
    """Bytes this process's memory cgroup still allows (limit - usage + inactive file cache, which
    the kernel reclaims first), the tightest over the cgroup and its parents; None when no memory
    cgroup limits the process (or none can be read). Without it, a process under a 2 GiB cgroup on
    a 24 GiB machine would plan with 20 GiB and be OOM-killed."""
    try:
        lines = PROC_CGROUP.read_text().splitlines()
    except OSError:
        return None
    best = None
    for line in lines:
        hid, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if hid == "0" and controllers == "":      # v2 (unified; in a hybrid layout under unified/)
            base = CGROUP_ROOT if (CGROUP_ROOT / "cgroup.controllers").is_file() else CGROUP_ROOT / "unified"
            names = ("memory.max", "memory.current", "inactive_file")
        elif "memory" in controllers.split(","):  # v1
            base = CGROUP_ROOT / "memory"
            names = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
        else:
            continue
        d = base / path.strip("/")
        while True:
            limit, usage = _read_int(d / names[0]), _read_int(d / names[1])
            if limit is not None and usage is not None and limit < 1 << 60:
                room = limit - usage + _stat_value(d / "memory.stat", names[2])
                best = room if best is None else min(best, room)
            if d == base or base not in d.parents:
                break
            d = d.parent
    return best


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


# --------------------------------------------------------------------------- in-memory data
# Calibrated on peak RSS (benchmarks/memory_honesty.py; RESULTS.md "Memory honesty"): kerascnn train on a
# 60,000-image .npz (176 MiB of uint8) in memory, at 16/24/32/48 pixels, gray and RGB models, peaked at
# the runtime (~0.87-0.89 GiB with a small model and tiny data) + 1.13 x the raw images + 3.74 x the
# prepared float32 training images (the prepared array, the tensor the pipeline gathers batches
# from, the copy TensorFlow makes when the dataset is built), within 5 %. Rounded up below.
RUNTIME_PEAK = 900 << 20     # peak RSS of a tiny in-memory run: TensorFlow, Keras, a small model
RAW_COPIES = 1.25            # x raw image bytes held at the peak (measured 1.13)
FLOAT_COPIES = 4.0           # x prepared float32 training images (measured 3.74)


def resident_bytes() -> int:
    """This process's resident set now (VmRSS; 0 where /proc is not there)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def in_memory_bytes(raw_bytes: int, images: int, size: tuple, channels: int, load_copies: float = 2.0) -> int:
    """Bytes an in-memory training run still has to allocate for its data and runtime: the larger of
    the load's transient peak (``load_copies`` x the raw bytes: file buffers, unpickled arrays,
    their validated copies) and what training holds (``RAW_COPIES`` x raw + ``FLOAT_COPIES`` x the
    ``images`` prepared as float32 at ``size`` x ``channels``), plus what the runtime grows by from
    now to its peak (``RUNTIME_PEAK`` less what this process already holds)."""
    prepared = images * int(size[0]) * int(size[1]) * int(channels) * 4
    data = max(load_copies * raw_bytes, RAW_COPIES * raw_bytes + FLOAT_COPIES * prepared)
    return int(data + max(0, RUNTIME_PEAK - resident_bytes()))


def check_in_memory(src, raw_bytes: int, images: int, size: tuple, channels: int, load_copies: float,
                    hint: str, model=None) -> int:
    """Refuse, in one line and before anything is loaded, in-memory data whose run would not fit
    (``in_memory_bytes`` against ``available_bytes``): without it the kernel ends the run with no
    message (resnet18 on a CIFAR-10 archive under 2 GiB: 3.0 GiB at the peak for 0.69 GiB of images).
    ``model(images) -> (bytes, words)``: what the model's training takes in this memory besides
    (``training_bytes``: weights, optimizer slots, activations at the batch), counted with the data;
    a model that alone does not fit is left to ``check`` (its own message, once the data is known)."""
    from kerascnn.errors import DataError

    need, have = in_memory_bytes(raw_bytes, images, size, channels, load_copies), available_bytes()
    model_need, words = model(images) if model is not None else (0, "")
    if model_need > have:
        model_need = 0
    if need + model_need > have:
        both = f"; {words}: {human_bytes(model_need)}" if model_need else ""
        raise DataError(f"{src}: in memory this run needs about {human_bytes(need + model_need)} (the data: "
                        f"{human_bytes(need)} for {images:,} images at {size[0]}x{size[1]}x{channels} as float32, "
                        f"{human_bytes(raw_bytes)} raw, and the runtime{both}) but only {human_bytes(have)} is "
                        f"available; {hint}" + (" or a smaller --batch-size" if model_need else ""))
    return need + model_need
