"""`kerascnn bench`: training and inference throughput on synthetic data resident in memory.

Warm-up, then the median over repeated timed windows of images/s and ms/step; multiply-adds
per image come from the pure-Python analysis, so achieved GFLOP/s (training counted as
3 x 2 x MACs per image: forward, and backward for inputs and weights; inference 2 x MACs)
and, on a known GPU, the fraction of the device's peak follow. Training runs through the same
engine as ``kerascnn train`` (``kerascnn.engines``): the TensorFlow engine's ``strategy.run``
loop on the default strategy, or with ``--backend jax`` the JAX engine (K steps per jit call,
data resident on the device); the torch backend, and ``--backend jax --no-jit``, go through
Keras's ``train_on_batch``.

Peak: float32 on a GPU with tensor-float-32 (compute capability 8.0+: A100, H100, ...) runs
its matmuls and convolutions on the TF32 tensor cores by default, in JAX and in TensorFlow, so
it is compared with the dense TF32 peak and the precision is reported as ``float32 (TF32)``;
mixed precision is compared with the dense bf16/fp16 peak. A fraction above 1 means the peak
table or the FLOP count is wrong for this run: it is reported with a warning, never silently.
"""
from __future__ import annotations

import platform
import statistics
import time

import numpy as np

# dense peak FLOP/s by device-name substring, from the vendors' data sheets (SXM parts; "dense" =
# without 2:4 sparsity): (bf16/fp16 tensor cores, TF32 tensor cores or None, fp32 CUDA cores)
PEAKS = {"H200": (989e12, 495e12, 67e12), "H100": (989e12, 495e12, 67e12), "A100": (312e12, 156e12, 19.5e12),
         "L4": (121e12, 60e12, 30e12), "V100": (125e12, None, 15.7e12), "T4": (65e12, None, 8.1e12)}


def cpu_name() -> str:
    """'AMD EPYC (2 cores; AVX2, AVX-512, AVX512_BF16)': a timing means little without the vector extensions."""
    from kerascnn.cpu import cpu_description

    return cpu_description()


def device_name(backend: str) -> tuple:
    """(human-readable device, 'GPU' or 'CPU')."""
    if backend == "jax":
        import jax

        d = jax.devices()[0]
        if d.platform == "gpu":
            return getattr(d, "device_kind", str(d)), "GPU"
        return cpu_name(), "CPU"  # jax names every CPU just "cpu"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return details.get("device_name", "GPU"), "GPU"
    return cpu_name(), "CPU"


def peak_flops(device: str, precision: str):
    """(peak FLOP/s, name of the peak) for a known GPU, else (None, None). float32 counts as TF32
    where the device has TF32 tensor cores (JAX and TensorFlow use them for float32 by default)."""
    for key, (half, tf32, single) in PEAKS.items():
        if key in device:
            if precision != "float32":
                return half, f"dense bf16/fp16 {half / 1e12:g} TFLOP/s"
            if tf32:
                return tf32, f"dense TF32 {tf32 / 1e12:g} TFLOP/s"
            return single, f"fp32 {single / 1e12:g} TFLOP/s"
    return None, None


def _precision(requested, backend: str, kind: str, report) -> tuple:
    """(Keras dtype policy, runs float32 on TF32 tensor cores). ``None`` (auto): float32 on CPUs
    (the same on every CPU kind); on GPUs the training policy of the engine: JAX
    ``policy.jax_precision_for`` (bf16 on compute capability 8.0+ where it pays), TensorFlow
    ``policy.precision_for``."""
    from kerascnn.engines import policy

    if backend == "jax":
        import jax

        devices = jax.devices()
        precision = requested or ("float32" if kind != "GPU" else policy.jax_precision_for(devices, None, report))
        return precision, policy.uses_tf32(devices, precision)
    if requested or kind != "GPU" or backend != "tensorflow":
        return requested or "float32", False
    from types import SimpleNamespace

    return policy.precision_for(SimpleNamespace(device_type="GPU"), None, report), False


def _windows(fn, steps: int, repeats: int) -> list:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(steps)
        times.append(time.perf_counter() - t0)
    return times


def run(model_name: str, batch_size: int = 64, input_shape=None, options=None, steps: int = 20, warmup: int = 5,
        repeats: int = 5, mode: str = "both", precision=None, jit=None, fuse_bn: bool = False,
        num_classes: int = 10) -> dict:
    import keras

    from kerascnn import guard
    from kerascnn.registry import get_entry

    backend = keras.backend.backend()
    entry = get_entry(model_name)
    options = options or {}
    shape = tuple(input_shape or entry.cfg.natural_input(options))
    report = entry.analyze(shape, num_classes, **options)
    guard.check(report, batch_size, "train" if mode != "infer" else "infer", what=model_name)
    if backend == "tensorflow":   # the thread pools ``kerascnn train`` uses (before TensorFlow starts)
        from kerascnn.distribute import setup_devices

        setup_devices()
    device, kind = device_name(backend)
    if jit is None:  # without jit, JAX runs op by op (TensorFlow still runs a graph)
        jit = kind == "GPU" or backend == "jax"
    precision, tf32 = _precision(precision, backend, kind, report)
    previous = keras.config.dtype_policy()
    keras.mixed_precision.set_dtype_policy(precision)
    try:
        return _measure(model_name, entry, report, shape, options, num_classes, batch_size, steps, warmup, repeats,
                        mode, precision, tf32, jit, fuse_bn, backend, device, kind)
    finally:   # models built later in this process are not silently mixed-precision
        keras.config.set_dtype_policy(previous)


def _measure(model_name, entry, report, shape, options, num_classes, batch_size, steps, warmup, repeats, mode,
             precision, tf32, jit, fuse_bn, backend, device, kind) -> dict:
    import keras

    keras.utils.set_random_seed(0)
    model = entry.build(shape, num_classes, **options)
    rng = np.random.default_rng(0)
    x = rng.random((batch_size,) + shape, dtype=np.float32)
    y = rng.integers(0, num_classes, batch_size)
    macs = report.macs
    out = {"model": model_name, "backend": backend, "batch_size": batch_size, "input_shape": list(shape),
           "device": device, "device_type": kind, "strategy": "default (one device)", "precision": precision,
           "jit": bool(jit), "macs_per_image": macs, "params": report.total_params,
           "steps": steps, "warmup": warmup, "repeats": repeats,
           "versions": {"keras": keras.__version__, "backend": backend, "python": platform.python_version()}}
    if backend == "tensorflow":
        import tensorflow as tf

        out["versions"]["tensorflow"] = tf.__version__
    elif backend == "jax":
        import jax

        out["versions"]["jax"] = jax.__version__
    peak, peak_name = peak_flops(device, precision) if kind == "GPU" else (None, None)
    out["peak"] = peak_name
    if precision == "float32" and (tf32 or (peak_name and "TF32" in peak_name)):
        out["precision"] = "float32 (TF32)"   # what the tensor cores actually run

    def record(prefix, times, flops_per_image):
        ips = [steps * batch_size / t for t in times]
        med = statistics.median(ips)
        out[f"{prefix}_images_per_second"] = round(med, 1)
        out[f"{prefix}_ms_per_step"] = round(1000 * batch_size / med, 3)
        out[f"{prefix}_gflops"] = round(med * flops_per_image / 1e9, 2)
        out[f"{prefix}_peak_fraction"] = round(med * flops_per_image / peak, 4) if peak else None
        if peak and med * flops_per_image > peak:
            out.setdefault("warnings", []).append(
                f"{prefix}: {med * flops_per_image / 1e12:.0f} TFLOP/s exceeds the {peak_name} peak; the peak "
                f"table or the FLOP count does not fit this run")

    if mode in ("train", "both"):
        if backend == "jax" and jit:
            engine = _jax_engine(num_classes)
            out["engine"] = ("jax, fused: K steps per jit call" if engine.fused else
                             "jax, one jit call per step dispatched asynchronously (CPU default)")
            train_steps = _engine_fn(engine, model, x, y, steps)
        elif backend == "tensorflow":
            engine = _tensorflow_engine(num_classes, jit)
            out["engine"] = f"tensorflow, strategy.run loop ({'XLA' if jit else 'no XLA'}), K steps per call"
            train_steps = _engine_fn(engine, model, x, y, steps)
        else:
            train_steps = _train_fn(model, x, y, backend, jit)
        train_steps(warmup)
        record("train", _windows(train_steps, steps, repeats), 3 * 2 * macs)
    if mode in ("infer", "both"):
        if fuse_bn:
            from kerascnn.fuse import fold_batchnorm

            model = fold_batchnorm(model, model_name, options)
            out["fused_bn"] = True
        infer_steps = _infer_fn(model, x, backend, jit)
        infer_steps(warmup)
        record("infer", _windows(infer_steps, steps, repeats), 2 * macs)
    return out


def _jax_engine(num_classes: int):
    from kerascnn.engines.jax import JaxEngine

    return JaxEngine(num_classes)


def _tensorflow_engine(num_classes: int, jit: bool):
    """The training engine of ``kerascnn train`` on TensorFlow's default strategy (one device)."""
    import tensorflow as tf

    from kerascnn.distribute import StrategyInfo
    from kerascnn.engines.tensorflow import TensorFlowEngine

    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    device = gpus[0] if gpus else tf.config.list_logical_devices("CPU")[0].name
    info = StrategyInfo(tf.distribute.get_strategy(), "default", 1, [device], device_type="GPU" if gpus else "CPU")
    return TensorFlowEngine(info, num_classes, jit=jit)


def _engine_fn(engine, model, x, y, steps: int):
    """Training steps through an engine (``kerascnn.engines``), exactly the step ``kerascnn train``
    runs: the synthetic batch repeated into a resident set of up to ``steps`` batches (at most
    ~512 MB), so one call runs that many steps; the step counts toward the SGD-with-momentum update."""
    import keras

    from kerascnn.engines.base import StepData

    batch = len(x)
    m = int(max(1, min(steps, (512 << 20) // max(1, x.nbytes))))

    def build_optimizer():
        opt = keras.optimizers.SGD(0.01, momentum=0.9)
        if keras.mixed_precision.dtype_policy().name == "mixed_float16":
            opt = keras.optimizers.LossScaleOptimizer(opt)
        return opt

    engine.build(lambda: model, build_optimizer)
    engine.set_train_data(StepData(np.concatenate([x] * m), np.concatenate([y] * m), batch, 0, 0, 2 ** 30))

    def steps_fn(n):
        return float(engine.train_steps(n)[0])   # the sums come back to the host: the device is done

    return steps_fn


def _train_fn(model, x, y, backend: str, jit: bool):
    """Keras's own ``train_on_batch`` (the torch backend, and ``--backend jax --no-jit``)."""
    import keras

    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", jit_compile=jit)
    xd, yd = keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)  # on the device once, like TF's

    def steps_fn(n):
        loss = 0.0
        for _ in range(n):
            loss = model.train_on_batch(xd, yd)
        return float(np.asarray(loss).ravel()[0])

    return steps_fn


def _infer_fn(model, x, backend: str, jit: bool):
    if backend != "tensorflow":
        import keras

        model.compile(jit_compile=jit)
        xd = keras.ops.convert_to_tensor(x)

        def steps_fn(n):
            out = None
            for _ in range(n):
                out = model.predict_on_batch(xd)
            return np.asarray(out)

        return steps_fn
    import tensorflow as tf

    xt = tf.constant(x)
    call = tf.function(lambda: model(xt, training=False), jit_compile=jit)

    @tf.function
    def many(n):
        out = call()
        for _ in tf.range(n - 1):
            out = call()
        return out

    def steps_fn(n):
        return many(tf.constant(n)).numpy()

    return steps_fn
