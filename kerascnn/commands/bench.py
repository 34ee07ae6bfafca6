"""`kerascnn bench`."""
from __future__ import annotations

import click

from kerascnn.commands.common import (classes_option, echo_json, format_option, input_shape_option,
                                      model_options)


def warn_emulated_precision(precision: str, backend: str = "tensorflow") -> bool:
    """One line on stderr when mixed_bfloat16 is to run on a CPU without native bf16 (and no GPU)."""
    from kerascnn.cpu import cpu_has_bf16

    if precision != "mixed_bfloat16" or cpu_has_bf16():
        return False
    from kerascnn.bench import device_name

    if backend in ("tensorflow", "jax") and device_name(backend)[1] == "GPU":
        return False
    click.echo("warning: this CPU has no native bfloat16 (AVX512_BF16 or AMX): mixed_bfloat16 is emulated "
               "and runs several times slower than float32 here", err=True)
    return True


@click.command(short_help="Training/inference throughput on synthetic data.")
@click.argument("model")
@click.option("--batch-size", type=click.IntRange(1, 65_536), default=64, show_default=True)
@input_shape_option
@classes_option
@model_options
@click.option("--steps", type=click.IntRange(1, 100_000), default=20, show_default=True, help="Steps per window.")
@click.option("--warmup", type=click.IntRange(0, 100_000), default=5, show_default=True)
@click.option("--repeats", type=click.IntRange(1, 1000), default=5, show_default=True, help="Timed windows.")
@click.option("--mode", type=click.Choice(["train", "infer", "both"]), default="both", show_default=True)
@click.option("--precision", type=click.Choice(["auto", "float32", "mixed_float16", "mixed_bfloat16"]),
              default="auto", show_default=True,
              help="Keras dtype policy; auto: float32 on CPUs, the training default on GPUs (JAX: mixed_bfloat16 "
                   "on compute capability 8.0+ for models big enough to gain). mixed_bfloat16 pays only on GPUs "
                   "and CPUs with native bf16 (AVX512_BF16/AMX), elsewhere it is emulated and slower (warned). "
                   "The precision used is reported (float32 on TF32 tensor cores as 'float32 (TF32)').")
@click.option("--jit/--no-jit", default=None, help="XLA (default: on for GPUs and for JAX, off for TensorFlow on CPU).")
@click.option("--fuse-bn", is_flag=True, help="Fold BatchNorm into conv/dense for the inference timing.")
@click.option("--backend", type=click.Choice(["tensorflow", "jax", "torch"]), default="tensorflow",
              show_default=True, help="Keras backend (jax/torch need that package installed).")
@format_option
def bench(model, batch_size, input_shape, num_classes, options, steps, warmup, repeats, mode, precision, jit,
          fuse_bn, backend, fmt):
    """Median images/s and ms/step over repeated windows, MACs per image, achieved GFLOP/s and,
    on a known GPU, the fraction of its peak."""
    from kerascnn.registry import model_ref

    ref = model_ref(model, options, input_shape, num_classes or 10)
    ref.check()  # geometry errors before any framework loads
    from kerascnn.engines import use_backend

    use_backend(backend)
    if backend == "tensorflow":
        from kerascnn.commands.common import load_tensorflow

        load_tensorflow()
    from kerascnn import bench as B

    warn_emulated_precision(precision, backend)

    r = B.run(ref.name, batch_size, ref.input_shape, ref.options, steps, warmup, repeats, mode,
              None if precision == "auto" else precision, jit, fuse_bn, ref.num_classes)
    if fmt == "json":
        echo_json(r)
        return
    from kerascnn.analysis import human

    click.echo(f"{r['model']} at {'x'.join(map(str, r['input_shape']))}, batch {r['batch_size']} | {r['device']} | "
               f"backend {r['backend']} | {r['strategy']} | precision {r['precision']} | jit {r['jit']}")
    click.echo("versions: " + ", ".join(f"{k} {v}" for k, v in r["versions"].items() if k != "backend"))
    click.echo(f"multiply-adds per image: {r['macs_per_image']:,} ({human(r['macs_per_image'], 'MAC')})")
    for prefix in ("train", "infer"):
        if f"{prefix}_images_per_second" in r:
            peak = r[f"{prefix}_peak_fraction"]
            click.echo(f"{prefix:>5}: {r[f'{prefix}_images_per_second']:>10,.1f} images/s  "
                       f"{r[f'{prefix}_ms_per_step']:8.2f} ms/step  {r[f'{prefix}_gflops']:8.2f} GFLOP/s"
                       + (f"  {peak:.1%} of the {r['peak']} peak" if peak is not None else ""))
    if r.get("engine"):
        click.echo(f"engine: {r['engine']}")
    for w in r.get("warnings", []):
        click.echo(f"warning: {w}", err=True)
