"""`kerascnn train`: one training loop for every tf.distribute strategy.

Why a custom loop: ``model.fit`` fails under MultiWorkerMirroredStrategy with
Keras 3 (keras-team/keras#20585: "Attempt to convert a value (PerReplica...)").
So every strategy -- default, one device, mirrored, multi-worker -- runs the same
``strategy.run(step)`` over ``strategy.experimental_distribute_dataset``, several
steps per ``tf.function`` call (like ``steps_per_execution``), with a Keras 3
model, optimizer and loss created in the strategy's scope. The loop gives what
``fit`` gives (progress bar, history, TensorBoard, best/last models) and more:

* Crash-safe, exact resume. After every epoch the full training state (model
  weights, optimizer variables including the step counter, epoch, best score,
  history) is written as ONE ``backup/state.npz`` through an atomic rename, so
  a kill at any instant leaves the previous complete state. We do not use
  Keras's ``BackupAndRestore``: it writes weights and epoch metadata as two
  files in place (a kill between them tears the state) and deletes its backup
  when training ends "normally", e.g. after ``TerminateOnNaN``
  (reliability.md section 1). The batch order of epoch e is
  ``permutation(seed, e)`` and Dropout's seed state is re-set from (seed, e) at
  the start of every epoch, so a resumed run sees exactly what an uninterrupted
  one would.
* A NaN/inf loss stops the run with a one-line ``TrainingError``; the last good
  epoch's model and state stay on disk.
* Multi-worker: every worker runs the same saves (reading synchronised
  variables may need collectives); only the chief writes into the run
  directory, the others into temporary directories removed at the end.
"""
from __future__ import annotations

import csv
import io
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from kerascnn import data as D
from kerascnn import distribute, fsutil, guard
from kerascnn.errors import ConfigError, TrainingError
from kerascnn.registry import get_entry

HISTORY_KEYS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")


def versions() -> dict:
    import keras
    import tensorflow as tf

    import kerascnn

    return {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__, "kerascnn": kerascnn.__version__}


def _precision_for(info, requested, report):
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


def cpu_has_bf16() -> bool:
    """Native bfloat16 arithmetic (AVX512-BF16 or AMX): oneDNN then runs bf16 convolutions about
    1.6x faster than float32 (lecture convnet, 2 cores: 11,400 -> 17,100 training images/s)."""
    if os.environ.get("KERASCNN_CPU_BF16") is not None:
        return os.environ["KERASCNN_CPU_BF16"] not in ("", "0", "false")
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def _jit_for(info, requested, echo):
    jit = requested if requested is not None else (info.device_type == "GPU" and info.kind in ("default", "onedevice"))
    if jit and info.kind == "mirrored":
        echo("note: XLA (--jit) is turned off under MirroredStrategy (it fails in several Keras releases)")
        jit = False
    return bool(jit)


def _write_history(path: Path, history: list) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=HISTORY_KEYS)
    w.writeheader()
    for row in history:
        w.writerow({k: row.get(k, "") for k in HISTORY_KEYS})
    fsutil.atomic_write_text(path, buf.getvalue())


def _save_model(model, path: Path) -> None:
    with fsutil.atomic_path(path) as tmp:
        model.save(tmp)


def _opt_key(var) -> str:
    return "o:" + var.path.split("/", 1)[-1]   # 'adam/iteration' -> 'o:iteration'


def _save_state(path: Path, model, optimizer, meta: dict) -> None:
    arrays = {f"w{i}": np.asarray(v) for i, v in enumerate(model.get_weights())}
    arrays.update({_opt_key(v): np.asarray(v.numpy()) for v in optimizer.variables})
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with fsutil.atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def _load_state(path: Path, model, optimizer, optimizer_name: str) -> dict:
    """Restore weights and optimizer state; the learning rate itself comes from the current options."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            weights = [z[f"w{i}"] for i in range(len(model.get_weights()))]
            saved = {k: z[k] for k in z.files if k.startswith("o:")}
    except Exception as e:
        raise TrainingError(f"{path}: cannot read the training state ({e.__class__.__name__}); it does not match "
                            f"this model or is damaged") from None
    if meta.get("optimizer", optimizer_name) != optimizer_name:
        raise ConfigError(f"the run was trained with {meta['optimizer']}; resuming with {optimizer_name} is not "
                          f"supported (start a new run instead)")
    model.set_weights(weights)
    for var in optimizer.variables:
        key = _opt_key(var)
        if key.endswith("learning_rate"):
            continue
        if key not in saved:
            raise TrainingError(f"{path}: no saved value for optimizer variable {key[2:]}; the optimizer changed")
        var.assign(saved[key])
    return meta


def weights_digest(model) -> str:
    """SHA-256 of every weight's bytes: equal digests mean bitwise-equal models (e.g. across workers)."""
    import hashlib

    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def _reseed_layers(model, seed: int, epoch: int) -> None:
    """Dropout (and any other SeedGenerator) state := f(seed, epoch), identical on resume."""
    for v in model.non_trainable_variables:
        if "seed_generator_state" in v.path:
            v.assign(np.array([seed * 1000 + epoch, 0], dtype=v.dtype))


CALL_SECONDS = 0.5


def _next_steps_per_call(n: int, seconds: float) -> int:
    """Steps for the next call so that it lasts about CALL_SECONDS; at most doubling per call
    (the first call also traces the function, which makes it look slow)."""
    return int(max(1, min(2 * n, 100_000, n * CALL_SECONDS / max(seconds, 1e-6))))


def _prepare_data(cfg: dict, entry, echo):
    natural = entry.default_input
    size = tuple(cfg["image_size"] or natural[:2])
    input_shape = size + (natural[2],)
    d = D.load_data(cfg["dataset"], cfg["data"], seed=cfg["seed"])
    x_tr, y_tr, x_val, y_val = D.split_validation(d.x_train, d.y_train, float(cfg["val_split"]), cfg["seed"])
    x_tr = D.prepare_images(x_tr, size, input_shape[2], d.pixel_scale)
    x_val = D.prepare_images(x_val, size, input_shape[2], d.pixel_scale)
    return d, input_shape, (x_tr, y_tr), (x_val, y_val)


def train(cfg: dict, resume: str | None = None, echo=print, verbose: int = 1) -> dict:
    """Train with the resolved options ``cfg`` (see ``train_config.resolve``); returns final metrics.

    The Keras dtype policy chosen for the run is restored afterwards, so models built later in the
    same process are not silently mixed-precision."""
    distribute.setup_devices(cfg.get("gpus"), cfg.get("strategy", "auto"))
    import keras

    previous = keras.config.dtype_policy()
    held = []   # the run directory's lock, released when this call ends however it ends
    try:
        return _train(cfg, resume, echo, verbose, held)
    finally:
        keras.config.set_dtype_policy(previous)
        for lock in held:
            lock.release()


def _train(cfg: dict, resume: str | None, echo, verbose: int, held: list) -> dict:
    import keras
    import tensorflow as tf

    t_start = time.time()
    entry = get_entry(cfg["model"])
    info = distribute.choose(cfg["strategy"])
    strategy = info.strategy
    jit = _jit_for(info, cfg.get("jit"), echo)
    keras.utils.set_random_seed(cfg["seed"])
    if cfg.get("deterministic"):
        tf.config.experimental.enable_op_determinism()

    d, input_shape, (x_tr, y_tr), (x_val, y_val) = _prepare_data(cfg, entry, echo)
    k = d.num_classes
    batch = int(cfg["batch_size"])
    if len(x_tr) < batch:
        echo(f"note: only {len(x_tr)} training images; batch size lowered from {batch} to {len(x_tr)}")
        batch = len(x_tr)
    if batch % info.replicas:
        raise ConfigError(f"--batch-size {batch} must be divisible by the {info.replicas} replicas")
    steps = len(x_tr) // batch
    report = entry.analyze(input_shape, k, **cfg["model_options"])
    guard.check(report, batch // info.replicas, "train", cfg["optimizer"], what=entry.name)
    precision = _precision_for(info, cfg.get("precision"), report)
    keras.mixed_precision.set_dtype_policy(precision)

    # ---- run directory (only the chief writes into the real one, and holds its lock)
    from kerascnn.train import rundir

    lock = None
    if info.is_chief:
        if resume:
            run_dir = Path(resume)
            lock = rundir.lock_existing(run_dir)
        elif cfg.get("run_dir"):
            run_dir = Path(cfg["run_dir"])
            lock = rundir.claim_new(run_dir)
        else:
            run_dir = fsutil.make_run_dir(cfg.get("runs_root") or "runs", entry.name)
            lock = rundir.claim_new(run_dir)
        out_dir = run_dir
        held.append(lock)
    else:
        run_dir = Path(resume or cfg.get("run_dir") or "runs")
        out_dir = Path(tempfile.mkdtemp(prefix=f"kerascnn-worker-{info.task.replace(':', '-')}-"))
    rundir.sweep_own_partials(out_dir)
    (out_dir / "backup").mkdir(exist_ok=True)
    rundir.sweep_own_partials(out_dir / "backup")

    # ---- model, optimizer, loss (in the strategy's scope)
    from kerascnn.schedules import make_optimizer, make_schedule

    total_steps = steps * int(cfg["epochs"])
    warmup = int(round(float(cfg["warmup_epochs"]) * steps))
    with strategy.scope():
        model = entry.build(input_shape, k, **cfg["model_options"])
        optimizer = make_optimizer(cfg["optimizer"], make_schedule(cfg["schedule"], cfg["lr"], total_steps, warmup),
                                   cfg["weight_decay"], cfg["momentum"])
        if precision == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)

    record = dict(cfg)
    record.update({
        "input_shape": list(input_shape), "num_classes": k, "class_names": d.class_names,
        "pixel_scale": d.pixel_scale, "data_name": d.name, "train_images": int(len(x_tr)),
        "val_images": int(len(x_val)), "versions": versions(), "strategy_resolved": info.kind,
        "replicas": info.replicas, "devices": info.devices, "precision_resolved": precision, "jit_resolved": jit,
        "batch_size": batch, "run_dir": str(run_dir), "kerascnn_command": " ".join(["kerascnn"] + sys.argv[1:]),
    })

    start_epoch, best, history = 0, -1.0, []
    state_path = out_dir / "backup" / "state.npz"
    changes = []       # options a resume changed: recorded once an epoch completes under them
    if resume and rundir.check_resumable(resume):
        meta = _load_state(Path(resume) / rundir.STATE_FILE, model, optimizer, cfg["optimizer"])
        start_epoch, best, history = meta["epoch"] + 1, meta["best"], meta["history"]
        echo(f"resuming {run_dir} from epoch {start_epoch + 1} (epochs 1-{start_epoch} done)")
        from kerascnn.runs import load_config

        old = load_config(resume)
        record["changes"] = list(old.get("changes", []))
        for key in ("epochs", "lr", "schedule"):
            if old.get(key) != cfg[key]:
                changes.append({"epoch": start_epoch + 1, "option": key, "from": old.get(key), "to": cfg[key]})
        if changes:
            echo("changed from epoch " + str(start_epoch + 1) + ": "
                 + ", ".join(f"{c['option']} {c['from']} -> {c['to']}" for c in changes))
        record["kerascnn_command"] = old.get("kerascnn_command", record["kerascnn_command"])
        record["changes"] += [dict(c, command=" ".join(["kerascnn"] + sys.argv[1:])) for c in changes]
    elif resume:
        echo(f"note: {run_dir} has no saved training state yet; starting from epoch 1")
    if info.is_chief and not resume:
        fsutil.atomic_write_json(run_dir / "config.json", record)
    record_pending = bool(resume) and bool(changes)

    echo(f"kerascnn: {entry.name} at {'x'.join(map(str, input_shape))}, {k} classes, "
         f"{report.total_params:,} params | data {d.name}: {len(x_tr)} train / {len(x_val)} val | "
         f"{info.describe()} | precision {precision} | jit {'on' if jit else 'off'} | batch {batch} (global) | "
         f"run dir {run_dir}")

    # ---- one step, several steps per call
    smoothing = float(cfg["label_smoothing"])

    def per_example_loss(y, p):
        if smoothing:
            return keras.losses.categorical_crossentropy(tf.one_hot(y, k), p, label_smoothing=smoothing)
        return keras.losses.sparse_categorical_crossentropy(y, p)

    def train_step(x, y):
        with tf.GradientTape() as tape:
            p = model(x, training=True)
            per = per_example_loss(y, p)
            loss = tf.nn.compute_average_loss(per, global_batch_size=batch)
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return _sums(per, p, y)

    def eval_step(x, y):
        p = model(x, training=False)
        return _sums(per_example_loss(y, p), p, y)

    def _sums(per, p, y):
        correct = tf.cast(tf.equal(tf.argmax(p, -1, output_type=y.dtype), y), tf.float32)
        return tf.stack([tf.reduce_sum(tf.cast(per, tf.float32)), tf.reduce_sum(correct),
                         tf.cast(tf.shape(y)[0], tf.float32)])

    step_fn = tf.function(train_step, jit_compile=jit)
    eval_fn = tf.function(eval_step, jit_compile=jit)

    @tf.function
    def train_calls(iterator, n):
        totals = tf.zeros([3])
        for _ in tf.range(n):
            x, y = next(iterator)
            totals += strategy.reduce("SUM", strategy.run(step_fn, args=(x, y)), axis=None)
        return totals

    @tf.function
    def eval_call(x, y):
        return strategy.reduce("SUM", strategy.run(eval_fn, args=(x, y)), axis=None)

    writer = tf.summary.create_file_writer(str(out_dir / "tb")) if info.is_chief else None
    pause_after = int(os.environ.get("KERASCNN_TEST_PAUSE_AFTER_EPOCH", "0") or 0)
    # Steps per tf.function call: fixed when asked for (and under multi-worker, where every worker must
    # run the same calls), otherwise adapted so that one call is about CALL_SECONDS of work: few
    # host round trips for small models (LeNet-5: whole epochs per call), live progress for big ones.
    adaptive = cfg["steps_per_call"] is None and info.kind != "multiworker"
    spc = int(cfg["steps_per_call"] or 16)
    seed = int(cfg["seed"])
    epochs = int(cfg["epochs"])
    images_seen, train_seconds = 0, 0.0
    # one stream for all remaining epochs (each consumes exactly `steps` batches) and one validation set
    iterator = iter(strategy.experimental_distribute_dataset(
        D.train_dataset(x_tr, y_tr, batch, seed, start_epoch, epochs, augment=bool(cfg["augment"]))))
    val_ds = strategy.experimental_distribute_dataset(D.eval_dataset(x_val, y_val, batch)) if len(x_val) else None
    try:
        for epoch in range(start_epoch, epochs):
            t0 = time.time()
            _reseed_layers(model, seed, epoch)
            if verbose and info.is_chief:
                echo(f"Epoch {epoch + 1}/{epochs}")
            bar = keras.utils.Progbar(steps, verbose=(verbose if sys.stdout.isatty() else 2 * bool(verbose))
                                      if info.is_chief else 0,
                                      stateful_metrics=["loss", "accuracy"])
            totals, done = np.zeros(3), 0
            while done < steps:
                n = min(spc, steps - done)
                t_call = time.perf_counter()
                totals += train_calls(iterator, tf.constant(n)).numpy()
                done += n
                if adaptive and n == spc:
                    spc = _next_steps_per_call(spc, time.perf_counter() - t_call)
                loss = totals[0] / max(totals[2], 1)
                if not np.isfinite(loss):
                    raise TrainingError(
                        f"loss became NaN at epoch {epoch + 1} (by batch {done} of {steps}); training stopped; "
                        f"the last good model and state are kept in {run_dir}"
                        + ("" if epoch > start_epoch or history else " (none: it diverged in the first epoch)"))
                bar.update(done, [("loss", loss), ("accuracy", totals[1] / max(totals[2], 1))])
            train_seconds += time.time() - t0
            images_seen += done * batch
            row = {"epoch": epoch + 1, "loss": float(totals[0] / totals[2]), "accuracy": float(totals[1] / totals[2])}
            if val_ds is not None:
                vt = np.zeros(3)
                for x, y in val_ds:
                    vt += eval_call(x, y).numpy()
                row.update(val_loss=float(vt[0] / vt[2]), val_accuracy=float(vt[1] / vt[2]))
            lr = optimizer.learning_rate
            row["lr"] = float(lr.numpy() if hasattr(lr, "numpy") else lr)
            row["seconds"] = round(time.time() - t0, 3)
            history.append(row)
            if verbose and info.is_chief:
                echo("  " + "  ".join(f"{k_}: {row[k_]:.4g}" for k_ in ("val_loss", "val_accuracy", "lr") if k_ in row))
            score = row.get("val_accuracy", row["accuracy"])
            improved = score > best
            best = max(best, score)
            # every worker performs the same saves; non-chief workers write to their temp dir
            _save_model(model, out_dir / "last.keras")
            if improved:
                _save_model(model, out_dir / "best.keras")
            _save_state(state_path, model, optimizer, {"epoch": epoch, "best": best, "history": history,
                                                       "optimizer": cfg["optimizer"]})
            if info.is_chief:
                _write_history(out_dir / "history.csv", history)
                if record_pending:   # the run record changes once an epoch has completed under the change
                    fsutil.atomic_write_json(run_dir / "config.json", record)
                    record_pending = False
                with writer.as_default(step=epoch + 1):
                    for key, value in row.items():
                        if key != "epoch":
                            tf.summary.scalar(key, value)
                writer.flush()
            if pause_after and epoch + 1 == pause_after:
                echo(f"KERASCNN_TEST_PAUSED after epoch {epoch + 1}")
                sys.stdout.flush()
                time.sleep(3600)
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError,
            tf.errors.AbortedError) as e:
        if info.kind != "multiworker":
            raise
        raise TrainingError(
            f"lost contact with another worker at epoch {epoch + 1} ({type(e).__name__}); restart every worker "
            f"with --resume {run_dir} to continue from epoch {epoch + 1}") from None
    finally:
        if writer is not None:
            writer.close()
        if not info.is_chief and sys.exc_info()[0] is not None:
            shutil.rmtree(out_dir, ignore_errors=True)

    metrics = {
        "model": entry.name, "epochs": epochs, "final": history[-1] if history else {},
        "best_epoch": int(np.argmax([h.get("val_accuracy", h["accuracy"]) for h in history]) + 1) if history else None,
        "best_score": best, "wall_seconds": round(time.time() - t_start, 2),
        "train_images_per_second": round(images_seen / train_seconds, 1) if train_seconds else None,
        "run_dir": str(run_dir) if info.is_chief else None, "weights_sha256": weights_digest(model),
    }
    if info.is_chief:
        fsutil.atomic_write_json(run_dir / "metrics.json", metrics)
        try:
            from kerascnn.plots import plot_curves

            plot_curves(history, run_dir / "curves.png")
        except ImportError:
            pass
    else:
        shutil.rmtree(out_dir, ignore_errors=True)
    return metrics
