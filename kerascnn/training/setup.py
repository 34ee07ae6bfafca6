"""Everything a run needs before its first epoch, in one place: ``start(config) -> Session``.

In order: the engine's devices (``kerascnn.engines.prepare``: the tf.distribute strategy, or
joining a jax.distributed run), the seed, the data (``kerascnn.data.source``), the engine for
the data's classes, the batch and the memory guard, the precision, the model and optimizer
(pretrained weights, fine-tuning phases), the run directory (claimed exclusively and locked; a
non-chief worker writes into a temporary directory), the run record (``RunRecord``, saved before
the first epoch; a resume restores the training state and records what it changes), the
start-up line, and the training stream handed to the engine. The epoch loop
(``kerascnn.training.loop``) then only trains.
"""
from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from kerascnn.training.config import TrainConfig


@dataclass
class Session:
    """A run between setup and its end: what the epoch loop and ``finish`` read and update."""
    config: TrainConfig
    entry: object                   # registry.ModelEntry
    engine: object                  # engines.base.Engine
    data: object                    # data.source.TrainingData
    record: object                  # train.record.RunRecord
    run_dir: Path                   # the run directory (a non-chief worker: the chief's)
    out_dir: Path                   # where this process writes (the run directory, or a worker's temp dir)
    batch: int
    steps: int                      # steps per epoch
    phases: "Phases"
    echo: Callable
    start_epoch: int = 0
    start_step: int = 0             # a resume from a state saved inside an epoch: the steps of start_epoch done
    start_totals: Optional[list] = None   # ... and that epoch's running [loss, correct, count] sums
    save_every: object = None       # savepoints.SaveEvery: the saves within an epoch
    best: float = -1.0
    history: list = field(default_factory=list)
    record_pending: bool = False    # a resume's changes are recorded once an epoch completes under them
    started: float = field(default_factory=time.time)
    cache_files: list = field(default_factory=list)

    @property
    def state_path(self) -> Path:
        from kerascnn.training import rundir

        return self.out_dir / rundir.STATE_FILE


@dataclass
class Phases:
    """The optimizer of each fine-tuning phase (``kerascnn.training.finetune``): without
    ``--freeze-epochs`` one phase over every step; with it phase 1 (the head) for ``freeze``
    epochs, then phase 2 with a fresh optimizer at a lower rate for the rest."""
    config: TrainConfig
    steps: int
    precision: str
    phase: int = 1

    @property
    def freeze(self) -> int:
        return self.config.freeze_epochs or 0

    def optimizer(self, phase: int):
        import keras

        from kerascnn.schedules import make_optimizer, make_schedule
        from kerascnn.training.finetune import UNFREEZE_LR_SCALE

        c, steps, freeze = self.config, self.steps, self.freeze
        warmup = int(round(float(c.warmup_epochs) * steps))
        lr, n, warm = c.lr, steps * int(c.epochs), warmup
        if freeze:   # phase 1: the head for `freeze` epochs; phase 2: a fresh optimizer for the rest
            lr, n, warm = ((c.lr, steps * freeze, warmup) if phase == 1 else
                           (c.lr * UNFREEZE_LR_SCALE, steps * (int(c.epochs) - freeze), 0))
        opt = make_optimizer(c.optimizer, make_schedule(c.schedule, lr, n, warm), c.weight_decay, c.momentum)
        return keras.optimizers.LossScaleOptimizer(opt) if self.precision == "mixed_float16" else opt


def start(config: TrainConfig, resume: Optional[str], echo, held: list, make_engine=None) -> Session:
    """Set the run up (see the module docstring); ``held`` receives the run directory's lock (the
    caller releases it however the run ends). ``make_engine(num_classes) -> Engine`` replaces the
    engine ``config.backend`` names (tests)."""
    import keras

    from kerascnn import engines
    from kerascnn.registry import get_entry
    from kerascnn.training import savepoints

    started = time.time()
    entry = get_entry(config.model)
    make_engine = make_engine or engines.prepare(config, echo)
    keras.utils.set_random_seed(config.seed)
    input_shape, data = _data(config, entry)
    engine = make_engine(data.data.num_classes)
    engine.check_source(data.train)
    batch, report = _batch(config, entry, engine, input_shape, data, echo)
    precision = engine.precision(config.precision, report)
    keras.mixed_precision.set_dtype_policy(precision)
    engine.check(config)
    save_every = savepoints.parse(config.save_every, engine.readers()[0])   # a time under multi-worker: refused
    phases = Phases(config, len(data.train) // batch, precision)
    if phases.freeze >= int(config.epochs):
        from kerascnn.errors import ConfigError

        raise ConfigError(f"--freeze-epochs {phases.freeze} leaves no epoch of the {config.epochs} to fine-tune; "
                          f"use fewer than --epochs")
    _build(config, entry, engine, input_shape, data.data.num_classes, phases, resume, echo)
    run_dir, out_dir = _claim(config, entry, engine, resume, held)
    session = Session(config, entry, engine, data, None, run_dir, out_dir, batch, phases.steps, phases, echo,
                      started=started, save_every=save_every)
    session.record = _new_record(session, input_shape, precision)
    _restore_or_save(session, resume)
    _report_bad_files(session)
    echo(_startup_line(session, input_shape, report, precision))
    _hand_over_data(session)
    return session


def _data(config: TrainConfig, entry):
    """(input shape, ``TrainingData``) at the model's natural input or ``image_size``."""
    from kerascnn.data.source import training_sources

    natural = entry.cfg.natural_input(config.model_options)
    size = tuple(config.image_size or natural[:2])
    data = training_sources(config.dataset, config.data, size, natural[2], seed=config.seed,
                            val_split=config.val_split, class_names=config.class_names,
                            stream_mode=config.stream, bad_files=config.bad_files,
                            model=_model_memory(config, entry, size + (natural[2],)))
    return size + (natural[2],), data


def _model_memory(config: TrainConfig, entry, input_shape):
    """images -> (bytes, words): the model's training memory (``guard.training_bytes``) at the batch
    these images allow, for the refusal before in-memory data is loaded. Two classes (the head's
    lower bound: the data's classes are not read yet); the whole batch on the CPU, whose replicas
    share this memory; nothing on accelerators (their own memory). ``_batch`` checks it exactly."""
    def need(images: int):
        from kerascnn import engines, guard

        batch = max(1, min(int(config.batch_size), int(images)))
        if not engines.on_cpu(config.backend):
            return 0, ""
        report = entry.analyze(input_shape, 2, **config.model_options)
        return guard.training_bytes(report, batch, config.optimizer), f"{entry.name} training at batch {batch}"
    return need


def _batch(config: TrainConfig, entry, engine, input_shape, data, echo):
    """The global batch (lowered for tiny data sets) and the model's report, checked by the memory guard."""
    from kerascnn import guard
    from kerascnn.errors import ConfigError

    n, batch = len(data.train), int(config.batch_size)
    if n < batch:
        echo(f"note: only {n} training images; batch size lowered from {batch} to {n}")
        batch = n
    if batch % engine.replicas:
        raise ConfigError(f"--batch-size {batch} must be divisible by the {engine.replicas} replicas")
    report = entry.analyze(input_shape, data.data.num_classes, **config.model_options)
    guard.check(report, batch // engine.replicas, "train", config.optimizer, what=entry.name)
    return batch, report


def _build(config: TrainConfig, entry, engine, input_shape, num_classes: int, phases: Phases, resume, echo) -> None:
    """Model and optimizer on the engine's devices, before the run directory: a weight file that
    does not fit fails here and leaves nothing behind. A resumed run rebuilds the phase it saved."""
    from kerascnn.training import rundir

    from_state = bool(resume and rundir.check_resumable(resume))
    meta = rundir.read_state_meta(resume) if from_state else {}
    first_epoch = int(meta["epoch"]) + 1 if from_state else 0
    inside = bool(meta.get("step"))   # saved inside epoch first_epoch: its phase has begun
    # at the switch: phase 1's state, unless it was saved inside the switch epoch
    phases.phase = 1 if phases.freeze and (first_epoch < phases.freeze or
                                           (first_epoch == phases.freeze and not inside)) else 2

    def build_model():
        model = entry.build(input_shape, num_classes, **config.model_options)
        if config.weights:
            from kerascnn import pretrained as P

            if from_state:  # the saved state holds the weights; only the architecture is needed
                model = P.with_preprocessing(model, P.resume_preprocessing(config.weights,
                                                                          config.weights_preprocessing))
            else:
                model, line, prep = P.load_pretrained(model, config.weights, entry.name, config.model_options,
                                                      config.weights_preprocessing or None)
                echo(line + f"; preprocessing {config.weights_preprocessing or 'none'} ({prep.origin}: {prep.why})")
        if phases.freeze:
            from kerascnn.training import finetune

            finetune.set_phase(model, phases.phase, config.unfreeze)
        return model

    engine.build(build_model, lambda: phases.optimizer(phases.phase))


def _claim(config: TrainConfig, entry, engine, resume, held: list):
    """(run directory, where this process writes): only the chief writes into the real one, and
    holds its lock; other workers write into a temporary directory removed at the end."""
    from kerascnn import fsutil
    from kerascnn.training import rundir

    if engine.is_chief:
        if resume:
            run_dir = Path(resume)
            lock = rundir.lock_existing(run_dir)
        elif config.run_dir:
            run_dir = Path(config.run_dir)
            lock = rundir.claim_new(run_dir)
        else:
            run_dir = fsutil.make_run_dir(config.runs_root or "runs", entry.name)
            lock = rundir.claim_new(run_dir)
        held.append(lock)
        out_dir = run_dir
    else:
        run_dir = Path(resume or config.run_dir or "runs")
        out_dir = Path(tempfile.mkdtemp(prefix=f"kerascnn-worker-{engine.task.replace(':', '-')}-"))
    rundir.sweep_own_partials(out_dir)
    (out_dir / "backup").mkdir(exist_ok=True)
    rundir.sweep_own_partials(out_dir / "backup")
    return run_dir, out_dir


def _new_record(s: Session, input_shape, precision: str):
    from kerascnn.engines import policy
    from kerascnn.training.record import RunRecord

    resolved = {"versions": policy.versions(), **s.engine.record(precision), "batch_size": s.batch,
                "run_dir": str(s.run_dir)}
    if s.phases.freeze:
        from kerascnn.training import finetune

        resolved["finetune"] = finetune.record(s.engine.model, s.phases.freeze, s.config.unfreeze, float(s.config.lr))
    resolved["kerascnn_command"] = " ".join(["kerascnn"] + sys.argv[1:])
    return RunRecord.new(s.config, input_shape, s.data.data, len(s.data.train), len(s.data.val), resolved)


def _restore_or_save(s: Session, resume) -> None:
    """A resume restores the training state and records what it changes (once an epoch completes
    under the change); a new run saves its record now."""
    from kerascnn.training import checkpoint, rundir
    from kerascnn.training.record import RunRecord
    from kerascnn.training.loop import continues_at, saved_words
    from kerascnn.training.resume import RESUME_CHANGES

    if resume and rundir.check_resumable(resume):
        path = Path(resume) / rundir.STATE_FILE
        meta = checkpoint.load_state(path, s.engine, s.config.optimizer)
        s.start_epoch, s.best, s.history = meta["epoch"] + 1, meta["best"], meta["history"]
        s.start_step, s.start_totals = checkpoint.position(path, meta, s.steps)
        where = continues_at(s.start_epoch, s.start_step)
        if s.start_step:
            s.echo(f"resuming {s.run_dir} from {where} of {s.steps} "
                   f"({saved_words(s.start_epoch, s.start_step, s.steps)} done)")
        else:
            s.echo(f"resuming {s.run_dir} from {where} (epochs 1-{s.start_epoch} done)")
        changes = s.record.resumed_from(RunRecord.load(resume, strict=True), s.start_epoch + 1, RESUME_CHANGES,
                                        step=s.start_step + 1 if s.start_step else None)
        if changes:
            s.echo(f"changed from {where}: " + ", ".join(f"{c['option']} {c['from']} -> {c['to']}" for c in changes))
        s.record_pending = bool(changes)
    elif resume:
        s.echo(f"note: {s.run_dir} has no saved training state yet; starting from epoch 1")
    if s.engine.is_chief and not resume:
        s.record.save(s.run_dir)


def _report_bad_files(s: Session) -> None:
    from kerascnn import fsutil

    bad = s.data.train.bad
    if bad:
        s.echo(f"warning: skipped {len(bad)} bad image file(s) (--bad-files skip); listed in "
               f"{s.run_dir / 'bad_files.txt'}")
        if s.engine.is_chief:
            fsutil.atomic_write_text(s.run_dir / "bad_files.txt", "\n".join(bad) + "\n")


def _startup_line(s: Session, input_shape, report, precision: str) -> str:
    d, e = s.data, s.engine
    return (f"kerascnn: {s.entry.name} at {'x'.join(map(str, input_shape))}, {d.data.num_classes} classes, "
            f"{report.total_params:,} params | data {d.data.name}: {len(d.train)} train / {len(d.val)} val "
            f"{d.train.describe(*e.readers())} | {e.describe()} | precision {precision} | "
            f"jit {'on' if e.jit else 'off'} | batch {s.batch} (global) | run dir {s.run_dir}")


def _hand_over_data(s: Session) -> None:
    """The training stream to the engine, from the first epoch to run; with ``--cache`` the images
    are decoded once first (into memory, or into the run directory's cache-*.npy)."""
    from kerascnn.engines.base import StepData

    mode, d = s.config.cache, s.data
    if mode and not d.train.in_memory:
        t = time.time()
        train = d.train.cached(mode, s.out_dir / "cache-train.npy")
        val = d.val.cached(mode, s.out_dir / "cache-val.npy")
        s.cache_files = [s.out_dir / n for n in ("cache-train.npy", "cache-val.npy")] if mode == "disk" else []
        d.train, d.val = train, val
        s.echo(f"cache: {len(train) + len(val):,} images decoded once into "
               f"{'memory' if mode == 'memory' else s.out_dir / 'cache-*.npy'} in {time.time() - t:.1f} s")
    c = s.config
    s.engine.set_train_data(StepData(d.train, d.train.labels, s.batch, int(c.seed), s.start_epoch, int(c.epochs),
                                     bool(c.augment), s.start_step))
