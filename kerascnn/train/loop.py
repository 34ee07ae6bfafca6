"""The epoch loop: one loop for every engine.

It owns what a run directory promises -- history.csv, TensorBoard, best/last ``.keras``, the
training state after every epoch (``checkpoint``), the NaN stop that keeps the last good epoch,
the stop message with the resume hint -- and asks an engine (``kerascnn.engines``) to build the
model, run K steps, evaluate and get/set the state. Dropout's seed state is re-set from
(seed, epoch) at the start of every epoch and epoch e's batch order is a function of (seed, e),
so a resumed run sees exactly what an uninterrupted one would.

Multi-worker: every worker runs the same saves (reading synchronised variables may need
collectives); only the chief writes into the run directory (and holds its lock), the others
into temporary directories removed at the end.
"""
from __future__ import annotations

import csv
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from kerascnn import data as D
from kerascnn import fsutil, guard
from kerascnn.errors import ConfigError, TrainingError
from kerascnn.registry import get_entry
from kerascnn.train import checkpoint, policy, rundir
from kerascnn.train.resume import RESUME_CHANGES

HISTORY_KEYS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")
CALL_SECONDS = 0.5


def next_steps_per_call(n: int, seconds: float) -> int:
    """Steps for the next call so that it lasts about CALL_SECONDS; at most doubling per call
    (the first call also traces the function, which makes it look slow)."""
    return int(max(1, min(2 * n, 100_000, n * CALL_SECONDS / max(seconds, 1e-6))))


def write_history(path: Path, history: list) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=HISTORY_KEYS)
    w.writeheader()
    for row in history:
        w.writerow({k: row.get(k, "") for k in HISTORY_KEYS})
    fsutil.atomic_write_text(path, buf.getvalue())


def save_model(model, path: Path) -> None:
    with fsutil.atomic_path(path) as tmp:
        model.save(tmp)


def prepare_data(opts, entry):
    natural = entry.cfg.natural_input(opts.model_options)
    size = tuple(opts.image_size or natural[:2])
    input_shape = size + (natural[2],)
    streamed = _streamed_data(opts, size, natural[2])
    if streamed is not None:
        return streamed[0], input_shape, streamed[1], streamed[2]
    d = D.load_data(opts.dataset, opts.data, seed=opts.seed)
    if opts.class_names:
        if len(opts.class_names) != d.num_classes:
            raise ConfigError(f"--class-names gives {len(opts.class_names)} names but {d.name} has "
                              f"{d.num_classes} classes")
        import dataclasses

        d = dataclasses.replace(d, class_names=list(opts.class_names))
    x_tr, y_tr, x_val, y_val = D.split_validation(d.x_train, d.y_train, float(opts.val_split), opts.seed)
    x_tr = D.prepare_images(x_tr, size, input_shape[2], d.pixel_scale)
    x_val = D.prepare_images(x_val, size, input_shape[2], d.pixel_scale)
    return d, input_shape, (x_tr, y_tr), (x_val, y_val)


def _streamed_data(opts, size, channels):
    """(ImageData whose x are stream.FileImages, train pair, val pair) when --data is streamed, else None."""
    import dataclasses

    from kerascnn.data import stream

    if not stream.wants_stream(getattr(opts, "stream", "auto"), opts.data, size, channels):
        return None
    path = Path(opts.data)
    x_tr, y_tr, x_te, y_te, names = stream.scan(path, opts.seed, getattr(opts, "bad_files", "stop"))
    k = D.check_labels(path, {"y_train": y_tr, "y_test": y_te}, names)
    names = list(opts.class_names or names or [str(i) for i in range(k)])
    if len(names) != k:
        raise ConfigError(f"--class-names gives {len(names)} names but {path} has {k} classes")
    d = D.ImageData(x_tr, y_tr, x_te, y_te, names, stream.source_name(path))
    i_tr, _, i_val, _ = D.split_validation(np.arange(len(x_tr)), y_tr, float(opts.val_split), opts.seed)
    fit = {"size": tuple(size), "channels": int(channels)}
    xt, xv = dataclasses.replace(x_tr.subset(i_tr), **fit), dataclasses.replace(x_tr.subset(i_val), **fit)
    xt.bad = list(x_tr.bad)
    return d, (xt, y_tr[i_tr]), (xv, y_tr[i_val])


def _data_path(streaming: bool, info, x=None, processes: int = 1) -> str:
    """The start-up line's data path: in memory, streamed from disk, and over how many workers
    (tf.distribute) or processes (the JAX engine's ``processes``)."""
    if not streaming:
        return "in memory"
    from kerascnn.data import stream

    n = stream.workers(info.strategy) if info else 1
    if x is not None and not isinstance(x, stream.FileImages):   # TFRecord shards: by file or by record
        from kerascnn.data import records

        how = records.policy(len(x.shards_holding()), max(n, processes))[1]
        return "streamed from TFRecord shards" + (f", {how}" if how else "")
    if n > 1:
        return f"streamed from disk, sharded by file over {n} workers"
    return "streamed from disk" + (f", sharded by file over {processes} processes" if processes > 1 else "")


class _TensorBoard:
    """Scalars per epoch through ``tf.summary`` when TensorFlow is there (a JAX-only machine
    has none: then nothing is written and ``tb/`` stays empty)."""

    def __init__(self, logdir: Path | None):
        self.writer = None
        if logdir is None:
            return
        try:
            import tensorflow as tf
        except ImportError:
            return
        self.tf = tf
        self.writer = tf.summary.create_file_writer(str(logdir))

    def write(self, row: dict) -> None:
        if self.writer is None:
            return
        with self.writer.as_default(step=row["epoch"]):
            for key, value in row.items():
                if key != "epoch":
                    self.tf.summary.scalar(key, value)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def tensorflow_engines(info):
    """``make_engine`` for ``run``: the TensorFlow engine on the chosen strategy. The strategy is
    chosen (``distribute.choose``) before anything else touches TensorFlow: multi-worker
    collectives must be configured at program start."""
    from kerascnn.engines.tensorflow import TensorFlowEngine

    def make_engine(opts, num_classes: int, echo):
        jit = policy.jit_for(info, opts.jit, echo)
        return TensorFlowEngine(info, num_classes, float(opts.label_smoothing), jit)

    return make_engine


def _finetune_record(model, freeze: int, opts) -> dict:
    from kerascnn.train import finetune

    return finetune.record(model, freeze, opts.unfreeze, float(opts.lr))


def run(opts, resume: str | None, echo, verbose: int, held: list, make_engine) -> dict:
    """Train with the resolved ``TrainOptions``; ``held`` receives the run directory's lock (the
    caller releases it). ``make_engine(opts, num_classes, echo)`` returns the engine. Returns the
    final metrics."""
    import keras

    t_start = time.time()
    entry = get_entry(opts.model)
    from kerascnn.tfquiet import import_tensorflow_if_installed

    import_tensorflow_if_installed()   # quietly, where installed: Keras seeds TensorFlow too (and the JAX engine's tf.data uses it)
    keras.utils.set_random_seed(opts.seed)
    if opts.deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()

    d, input_shape, (x_tr, y_tr), (x_val, y_val) = prepare_data(opts, entry)
    k = d.num_classes
    engine = make_engine(opts, k, echo)
    streaming = not isinstance(x_tr, np.ndarray)
    if streaming and engine.name != "tensorflow":   # the JAX engine reads the same tf.data stream
        check = getattr(engine, "check_stream", None)
        if check is None:
            raise ConfigError(f"streaming from disk (--stream) is not supported by the {engine.name} engine; "
                              f"use --stream off (the data must then fit in memory)")
        check()
    info = getattr(engine, "info", None)
    batch = int(opts.batch_size)
    if len(x_tr) < batch:
        echo(f"note: only {len(x_tr)} training images; batch size lowered from {batch} to {len(x_tr)}")
        batch = len(x_tr)
    if batch % engine.replicas:
        raise ConfigError(f"--batch-size {batch} must be divisible by the {engine.replicas} replicas")
    steps = len(x_tr) // batch
    report = entry.analyze(input_shape, k, **opts.model_options)
    guard.check(report, batch // engine.replicas, "train", opts.optimizer, what=entry.name)
    precision = (policy.precision_for(info, opts.precision, report) if info
                 else policy.jax_precision_for(engine.devices, opts.precision, report))
    keras.mixed_precision.set_dtype_policy(precision)

    # ---- model and optimizer on the engine's devices (before the run directory: a weight file
    # that does not fit fails here and leaves nothing behind)
    from kerascnn.schedules import make_optimizer, make_schedule

    total_steps = steps * int(opts.epochs)
    warmup = int(round(float(opts.warmup_epochs) * steps))

    freeze = opts.freeze_epochs or 0           # fine-tuning in two phases (kerascnn.train.finetune)
    if freeze and engine.name != "tensorflow":
        raise ConfigError(f"--freeze-epochs needs the tensorflow engine (this run uses {engine.name})")
    if freeze >= int(opts.epochs):
        raise ConfigError(f"--freeze-epochs {freeze} leaves no epoch of the {opts.epochs} to fine-tune; "
                          f"use fewer than --epochs")

    def build_optimizer(phase=1):
        from kerascnn.train.finetune import UNFREEZE_LR_SCALE

        lr, n, warm = opts.lr, total_steps, warmup
        if freeze:   # phase 1: the head for `freeze` epochs; phase 2: a fresh optimizer for the rest
            lr, n, warm = ((opts.lr, steps * freeze, warmup) if phase == 1 else
                           (opts.lr * UNFREEZE_LR_SCALE, steps * (int(opts.epochs) - freeze), 0))
        opt = make_optimizer(opts.optimizer, make_schedule(opts.schedule, lr, n, warm),
                             opts.weight_decay, opts.momentum)
        return keras.optimizers.LossScaleOptimizer(opt) if precision == "mixed_float16" else opt

    from_state = bool(resume and rundir.check_resumable(resume))
    first_epoch = int(rundir.read_state_meta(resume)["epoch"]) + 1 if from_state else 0
    phase = 1 if freeze and first_epoch <= freeze else 2   # at the switch: the state is phase 1's

    def build_model():
        model = entry.build(input_shape, k, **opts.model_options)
        if opts.weights:
            from kerascnn import pretrained as P

            if from_state:  # the saved state holds the weights; only the architecture is needed
                model = P.with_preprocessing(model, P.resume_preprocessing(opts.weights, opts.weights_preprocessing))
            else:
                model, line, prep = P.load_pretrained(model, opts.weights, entry.name, opts.model_options,
                                                      opts.weights_preprocessing or None)
                echo(line + f"; preprocessing {opts.weights_preprocessing or 'none'} ({prep.origin}: {prep.why})")
        if freeze:
            from kerascnn.train import finetune

            finetune.set_phase(model, phase, opts.unfreeze)
        return model

    engine.build(build_model, lambda: build_optimizer(phase))

    # ---- run directory (only the chief writes into the real one, and holds its lock)
    if engine.is_chief:
        if resume:
            run_dir = Path(resume)
            lock = rundir.lock_existing(run_dir)
        elif opts.run_dir:
            run_dir = Path(opts.run_dir)
            lock = rundir.claim_new(run_dir)
        else:
            run_dir = fsutil.make_run_dir(opts.runs_root or "runs", entry.name)
            lock = rundir.claim_new(run_dir)
        held.append(lock)
        out_dir = run_dir
    else:
        run_dir = Path(resume or opts.run_dir or "runs")
        task = info.task if info else "worker"
        out_dir = Path(tempfile.mkdtemp(prefix=f"kerascnn-worker-{task.replace(':', '-')}-"))
    rundir.sweep_own_partials(out_dir)
    (out_dir / "backup").mkdir(exist_ok=True)
    rundir.sweep_own_partials(out_dir / "backup")

    from kerascnn.train.options import RunRecord

    record = RunRecord.new(opts, input_shape=input_shape, data=d, train_images=len(x_tr), val_images=len(x_val),
                           resolved={"versions": policy.versions(), "engine": engine.name,
                                     "strategy_resolved": info.kind if info else engine.name,
                                     "replicas": engine.replicas, "devices": [str(v) for v in engine.devices],
                                     "precision_resolved": precision, "jit_resolved": getattr(engine, "jit", True),
                                     "batch_size": batch, "run_dir": str(run_dir),
                                     **({"finetune": _finetune_record(engine.model, freeze, opts)} if freeze else {}),
                                     "kerascnn_command": " ".join(["kerascnn"] + sys.argv[1:])})

    start_epoch, best, history = 0, -1.0, []
    state_path = out_dir / rundir.STATE_FILE
    record_pending = False    # a resume's changes are recorded once an epoch completes under them
    if resume and rundir.check_resumable(resume):
        meta = checkpoint.load_state(Path(resume) / rundir.STATE_FILE, engine, opts.optimizer)
        start_epoch, best, history = meta["epoch"] + 1, meta["best"], meta["history"]
        echo(f"resuming {run_dir} from epoch {start_epoch + 1} (epochs 1-{start_epoch} done)")
        old = RunRecord.load(resume, strict=True)
        changes = record.resumed_from(old, start_epoch + 1, RESUME_CHANGES)
        if changes:
            echo(f"changed from epoch {start_epoch + 1}: "
                 + ", ".join(f"{c['option']} {c['from']} -> {c['to']}" for c in changes))
        record_pending = bool(changes)
    elif resume:
        echo(f"note: {run_dir} has no saved training state yet; starting from epoch 1")
    if engine.is_chief and not resume:
        record.save(run_dir)
    if streaming and x_tr.bad:
        echo(f"warning: skipped {len(x_tr.bad)} bad image file(s) (--bad-files skip); listed in "
             f"{run_dir / 'bad_files.txt'}")
        if engine.is_chief:
            fsutil.atomic_write_text(run_dir / "bad_files.txt", "\n".join(x_tr.bad) + "\n")

    strategy_text = policy.describe_strategy(info) if info else (
        f"engine {engine.name}, {engine.replicas} device(s) on {', '.join(map(str, engine.devices))}")
    echo(f"kerascnn: {entry.name} at {'x'.join(map(str, input_shape))}, {k} classes, "
         f"{report.total_params:,} params | data {d.name}: {len(x_tr)} train / {len(x_val)} val "
         f"{_data_path(streaming, info, x_tr, getattr(engine, 'processes', 1))} | "
         f"{strategy_text} | precision {precision} | jit {'on' if getattr(engine, 'jit', True) else 'off'} | "
         f"batch {batch} (global) | run dir {run_dir}")

    seed, epochs = int(opts.seed), int(opts.epochs)
    from kerascnn.engines.base import StepData, WorkerLost

    cache = getattr(opts, "cache", None)
    if streaming and cache:
        from kerascnn.data import stream

        t_cache = time.time()
        if cache == "memory":
            x_tr, x_val = stream.decode_all(x_tr), stream.decode_all(x_val)
        else:
            x_tr = stream.disk_cache(x_tr, out_dir / "cache-train.npy")
            x_val = stream.disk_cache(x_val, out_dir / "cache-val.npy") if len(x_val) else x_val
        echo(f"cache: {len(x_tr) + len(x_val):,} images decoded once into "
             f"{'memory' if cache == 'memory' else out_dir / 'cache-*.npy'} in {time.time() - t_cache:.1f} s")
    engine.set_train_data(StepData(x_tr, y_tr, batch, seed, start_epoch, epochs, bool(opts.augment)))
    tb = _TensorBoard(out_dir / "tb" if engine.is_chief else None)
    pause_after = int(os.environ.get("KERASCNN_TEST_PAUSE_AFTER_EPOCH", "0") or 0)
    # Steps per call: fixed when asked for (and under multi-worker, where every worker must run the
    # same calls), otherwise adapted so that one call is about CALL_SECONDS of work: few host round
    # trips for small models (LeNet-5: whole epochs per call), live progress for big ones.
    multiworker = bool(info and info.kind == "multiworker")
    adaptive = opts.steps_per_call is None and not multiworker
    spc = int(opts.steps_per_call or 16)
    images_seen, train_seconds = 0, 0.0
    epoch = start_epoch
    try:
        for epoch in range(start_epoch, epochs):
            t0 = time.time()
            if freeze and epoch == freeze and phase == 1:   # unfreeze: phase 2 with its own optimizer
                from kerascnn.train import finetune

                names = finetune.set_phase(engine.model, 2, opts.unfreeze)
                phase = 2
                engine.build(lambda: engine.model, lambda: build_optimizer(2))
                echo(f"epoch {epoch + 1}: unfroze {len(names['trainable'])} layers "
                     f"({len(names['frozen'])} stay frozen); lr x{finetune.UNFREEZE_LR_SCALE}")
            engine.reseed(seed, epoch)
            if verbose and engine.is_chief:
                echo(f"Epoch {epoch + 1}/{epochs}")
            bar = keras.utils.Progbar(steps, verbose=(verbose if sys.stdout.isatty() else 2 * bool(verbose))
                                      if engine.is_chief else 0, stateful_metrics=["loss", "accuracy"])
            totals, done = np.zeros(3), 0
            while done < steps:
                n = min(spc, steps - done)
                t_call = time.perf_counter()
                totals += engine.train_steps(n)
                done += n
                if adaptive and n == spc:
                    spc = next_steps_per_call(spc, time.perf_counter() - t_call)
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
            if len(x_val):
                vt = engine.evaluate(x_val, y_val, batch)
                row.update(val_loss=float(vt[0] / vt[2]), val_accuracy=float(vt[1] / vt[2]))
            row["lr"] = engine.learning_rate()
            row["seconds"] = round(time.time() - t0, 3)
            history.append(row)
            if verbose and engine.is_chief:
                echo("  " + "  ".join(f"{k_}: {row[k_]:.4g}" for k_ in ("val_loss", "val_accuracy", "lr") if k_ in row))
            score = row.get("val_accuracy", row["accuracy"])
            improved = score > best
            best = max(best, score)
            # every worker performs the same saves; non-chief workers write to their temp dir
            engine.sync_to_model()
            save_model(engine.model, out_dir / "last.keras")
            if improved:
                save_model(engine.model, out_dir / "best.keras")
            checkpoint.save_state(state_path, engine.get_state(), {"epoch": epoch, "best": best, "history": history,
                                                                   "optimizer": opts.optimizer})
            if engine.is_chief:
                write_history(out_dir / "history.csv", history)
                if record_pending:
                    record.save(run_dir)
                    record_pending = False
                tb.write(row)
            if pause_after and epoch + 1 == pause_after:
                echo(f"KERASCNN_TEST_PAUSED after epoch {epoch + 1}")
                sys.stdout.flush()
                time.sleep(3600)
    except WorkerLost as e:
        raise TrainingError(
            f"lost contact with another worker at epoch {epoch + 1} ({e}); restart every worker "
            f"with --resume {run_dir} to continue from epoch {epoch + 1}") from None
    except KeyboardInterrupt as e:   # Ctrl-C, or errors.Stopped (a subclass) from the CLI's SIGTERM handler
        saved = f"epochs 1-{len(history)} are saved" if history else "no epoch was completed"
        signal_name = getattr(e, "signal_name", None)
        how = f"by {signal_name}" if signal_name else "by Ctrl-C"
        msg = (f"stopped {how} after epoch {len(history)} of {epochs}; {saved}; continue with: "
               f"kerascnn train --resume {run_dir}")
        if signal_name:
            e.args = (msg,)     # keep the Stopped (the CLI exits 128 + signal number), with the resume hint
            raise
        raise TrainingError(msg) from None
    finally:
        tb.close()
        if not engine.is_chief and sys.exc_info()[0] is not None:
            shutil.rmtree(out_dir, ignore_errors=True)

    engine.sync_to_model()
    metrics = {
        "model": entry.name, "epochs": epochs, "final": history[-1] if history else {},
        "best_epoch": int(np.argmax([h.get("val_accuracy", h["accuracy"]) for h in history]) + 1) if history else None,
        "best_score": best, "wall_seconds": round(time.time() - t_start, 2),
        "train_images_per_second": round(images_seen / train_seconds, 1) if train_seconds else None,
        "run_dir": str(run_dir) if engine.is_chief else None, "weights_sha256": checkpoint.weights_digest(engine.model),
    }
    if engine.is_chief:
        fsutil.atomic_write_json(run_dir / "metrics.json", metrics)
        for name in ("cache-train.npy", "cache-val.npy"):  # --cache disk: written by this run, done with
            if getattr(x_tr, "cache_file", None) and (out_dir / name).is_file():
                (out_dir / name).unlink()
        try:
            from kerascnn.plots import plot_curves

            plot_curves(history, run_dir / "curves.png")
        except ImportError:
            pass
    else:
        shutil.rmtree(out_dir, ignore_errors=True)
    return metrics
