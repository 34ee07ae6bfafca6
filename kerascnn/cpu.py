"""What the CPU can do natively, read from /proc/cpuinfo (pure Python, no TensorFlow).

Used to keep automatic choices off emulated precisions and to warn when one is asked for, and
to name the CPU beside a timing: the same command takes 4-12x longer on a 2-core AVX2-only CPU
than on a 2-core AVX-512 + AVX512_BF16 one."""
from __future__ import annotations

import os
import platform


def _cpuinfo_line(prefix: str) -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            return next((line for line in fh if line.startswith(prefix)), "")
    except OSError:
        return ""


def cpu_has_bf16() -> bool:
    """Native bfloat16 arithmetic (AVX512-BF16 or AMX): oneDNN then runs bf16 convolutions about
    1.6x faster than float32 (lecture convnet, 2 cores: 11,400 -> 17,100 training images/s);
    without it bf16 is emulated and several times slower (6.4x for `bench convnet`, issue 16).
    ``KERASCNN_CPU_BF16=0|1`` overrides the detection."""
    if os.environ.get("KERASCNN_CPU_BF16") is not None:
        return os.environ["KERASCNN_CPU_BF16"] not in ("", "0", "false")
    flags = _cpuinfo_line("flags")
    return " avx512_bf16" in flags or " amx_bf16" in flags


def cpu_description() -> str:
    """'Intel(R) Xeon(R) ... (2 cores; AVX-512, AVX512_BF16)': the model name and vector extensions."""
    name = _cpuinfo_line("model name").partition(":")[2].strip() or platform.processor() or "unknown CPU"
    flags = set(_cpuinfo_line("flags").partition(":")[2].split())
    ext = [label for flag, label in (("avx2", "AVX2"), ("avx512f", "AVX-512"), ("avx512_bf16", "AVX512_BF16"),
                                     ("amx_bf16", "AMX-BF16")) if flag in flags]
    return f"{name} ({os.cpu_count()} cores; {', '.join(ext) or 'no AVX2'})"
