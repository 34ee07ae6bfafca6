"""The epoch loop: one loop for every engine (``kerascnn.engines.base.Engine``).

Set up by ``kerascnn.training.setup`` (a ``Session``), it only trains: per epoch the fine-tuning
switch, K steps per engine call (adapted to about ``CALL_SECONDS`` of work) under the NaN stop,
validation, and what a run directory promises after every epoch -- best/last ``.keras``, the
training state (``checkpoint``), history.csv, TensorBoard, the record of a resume's changes.
Within an epoch the training state alone is saved as ``--save-every`` says (``savepoints``),
with the position (epoch, step) and the epoch's running sums. A stop (Ctrl-C, SIGTERM, a lost
worker) ends in one line saying what is saved and with the resume hint. Dropout's seed state
is re-set from (seed, epoch) at the start of every epoch (and restored with a state saved
inside one) and epoch e's batch order is a function of (seed, e), so a resumed run sees exactly
what an uninterrupted one would; the epoch's loss and accuracy sums are added one step at a
time in float32 (``Engine.train_steps``), so its history row does not depend on where it was
resumed or how its steps were grouped into calls.

Multi-worker: every worker runs the same saves (reading synchronised variables may need
collectives); only the chief writes into the run directory (and holds its lock), the others
into temporary directories removed at the end.
"""
from __future__ import annotations

import contextlib
import csv
import io
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from kerascnn import fsutil
from kerascnn.errors import TrainingError
from kerascnn.training import checkpoint, savepoints

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


class TensorBoard:
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


class EpochLoop:
    """Train ``session`` from its first epoch to its last; ``session.history`` grows by one row
    per completed epoch and ``session.best`` follows the best score."""

    def __init__(self, session, verbose: int = 1):
        self.s, self.verbose = session, verbose
        c, engine = session.config, session.engine
        self.seed, self.epochs = int(c.seed), int(c.epochs)
        # Steps per call: fixed when asked for (and when every worker must run the same calls),
        # otherwise adapted so that one call is about CALL_SECONDS of work: few host round trips
        # for small models (LeNet-5: whole epochs per call), live progress for big ones.
        self.adaptive = c.steps_per_call is None and not engine.lockstep
        self.spc = int(c.steps_per_call or 16)
        self.images_seen, self.train_seconds = 0, 0.0
        self.epoch, self.step = session.start_epoch, session.start_step
        self.bad_listed = list(getattr(session.data.train, "bad", []))   # bad_files.txt as setup wrote it
        self.trigger = savepoints.SaveTrigger(session.save_every or savepoints.SaveEvery())
        self.saved_at = (session.start_epoch, session.start_step)   # where the saved state continues

    def run(self) -> None:
        s = self.s
        tb = TensorBoard(s.out_dir / "tb" if s.engine.is_chief else None)
        with self._stops(tb):
            for self.epoch in range(s.start_epoch, self.epochs):
                t0 = time.time()
                self._maybe_unfreeze()
                row = self._train_epoch()
                self.train_seconds += time.time() - t0
                self._validate(row, t0)
                self._save(row, tb)
                self._list_bad_files()

    def _maybe_unfreeze(self) -> None:
        """Fine-tuning: at epoch ``freeze`` phase 2 starts, with its own optimizer."""
        s, phases = self.s, self.s.phases
        if not (phases.freeze and self.epoch == phases.freeze and phases.phase == 1):
            return
        from kerascnn.training import finetune

        names = finetune.set_phase(s.engine.model, 2, s.config.unfreeze)
        phases.phase = 2
        s.engine.build(lambda: s.engine.model, lambda: phases.optimizer(2))
        s.echo(f"epoch {self.epoch + 1}: unfroze {len(names['trainable'])} layers "
               f"({len(names['frozen'])} stay frozen); lr x{finetune.UNFREEZE_LR_SCALE}")

    def _train_epoch(self) -> dict:
        """One epoch of training steps, K per engine call, with a progress bar, the NaN stop and
        the saves within the epoch; a resumed run's first epoch starts at its saved step."""
        import keras

        s, engine, steps = self.s, self.s.engine, self.s.steps
        start = s.start_step if self.epoch == s.start_epoch else 0
        totals = np.asarray(s.start_totals if start else np.zeros(3), np.float32)
        if not start:   # a state saved inside the epoch holds the Dropout seed state of its step
            engine.reseed(self.seed, self.epoch)
        if self.verbose and engine.is_chief:
            s.echo(f"Epoch {self.epoch + 1}/{self.epochs}" + (f" (from step {start + 1})" if start else ""))
        shown = (self.verbose if sys.stdout.isatty() else 2 * bool(self.verbose)) if engine.is_chief else 0
        bar = keras.utils.Progbar(steps, verbose=shown, stateful_metrics=["loss", "accuracy"])
        done = self.step = start
        while done < steps:
            n = min(self.spc, steps - done, self.trigger.limit(self.epoch * steps + done) or steps)
            t_call = time.perf_counter()
            totals = engine.train_steps(n, totals)
            done = self.step = done + n
            if self.adaptive and n == self.spc:
                self.spc = next_steps_per_call(self.spc, time.perf_counter() - t_call)
            loss = float(totals[0]) / max(float(totals[2]), 1)
            if not np.isfinite(loss):
                raise TrainingError(
                    f"loss became NaN at epoch {self.epoch + 1} (by batch {done} of {steps}); training stopped; "
                    f"the last good model and state are kept in {s.run_dir}"
                    + ("" if self.epoch > s.start_epoch or s.history else " (none: it diverged in the first epoch)"))
            bar.update(done, [("loss", loss), ("accuracy", float(totals[1]) / max(float(totals[2]), 1))])
            if done < steps and self.trigger.due(self.epoch * steps + done):
                self._save_inside_epoch(done, totals)
        self.images_seen += (done - start) * s.batch
        return {"epoch": self.epoch + 1, "loss": float(totals[0]) / float(totals[2]),
                "accuracy": float(totals[1]) / float(totals[2])}

    def _save_inside_epoch(self, step: int, totals) -> None:
        """The training state after ``step`` steps of this epoch, with the epoch's running sums
        (every worker saves at the same step; non-chief workers into their temporary directory)."""
        s = self.s
        checkpoint.save_state(s.state_path, s.engine.get_state(),
                              {"epoch": self.epoch - 1, "best": s.best, "history": s.history,
                               "optimizer": s.config.optimizer, "step": step, "steps": s.steps,
                               "totals": [float(t) for t in totals]})
        self.saved_at = (self.epoch, step)
        self.trigger.saved()

    def _validate(self, row: dict, t0: float) -> None:
        s = self.s
        if len(s.data.val):
            vt = s.engine.evaluate(s.data.val, s.data.val.labels, s.batch)
            row.update(val_loss=float(vt[0] / vt[2]), val_accuracy=float(vt[1] / vt[2]))
        row["lr"] = s.engine.learning_rate()
        row["seconds"] = round(time.time() - t0, 3)
        s.history.append(row)
        if self.verbose and s.engine.is_chief:
            s.echo("  " + "  ".join(f"{k}: {row[k]:.4g}" for k in ("val_loss", "val_accuracy", "lr") if k in row))

    def _save(self, row: dict, tb: TensorBoard) -> None:
        """Every worker performs the same saves; non-chief workers write to their temp dir."""
        s, engine = self.s, self.s.engine
        score = row.get("val_accuracy", row["accuracy"])
        improved = score > s.best
        s.best = max(s.best, score)
        engine.sync_to_model()
        save_model(engine.model, s.out_dir / "last.keras")
        if improved:
            save_model(engine.model, s.out_dir / "best.keras")
        checkpoint.save_state(s.state_path, engine.get_state(), {"epoch": self.epoch, "best": s.best,
                                                                 "history": s.history,
                                                                 "optimizer": s.config.optimizer})
        self.saved_at = (self.epoch + 1, 0)
        self.trigger.saved()
        if engine.is_chief:
            write_history(s.out_dir / "history.csv", s.history)
            if s.record_pending:
                s.record.save(s.run_dir)
                s.record_pending = False
            tb.write(row)

    def _list_bad_files(self) -> None:
        """Images that failed to decode this epoch (--bad-files skip): one warning each, and
        bad_files.txt rewritten with every one so far."""
        s = self.s
        found = list(getattr(s.data.train, "bad", [])) + list(getattr(s.data.val, "bad", []))
        fresh = [b for b in found if b not in self.bad_listed]
        for line in fresh:
            s.echo(f"warning: skipped {line} (--bad-files skip)")
        self.bad_listed += fresh
        if fresh and s.engine.is_chief:
            from kerascnn import fsutil

            fsutil.atomic_write_text(s.run_dir / "bad_files.txt", "\n".join(self.bad_listed) + "\n")

    @contextlib.contextmanager
    def _stops(self, tb: TensorBoard):
        """A lost worker or a stop (Ctrl-C, SIGTERM) -> one line that says how to resume."""
        from kerascnn.engines.base import WorkerLost

        s = self.s
        try:
            yield
        except WorkerLost as e:
            raise TrainingError(
                f"lost contact with another worker at epoch {self.epoch + 1} ({e}); restart every worker "
                f"with --resume {s.run_dir} to continue from {continues_at(*self.saved_at)}") from None
        except KeyboardInterrupt as e:   # Ctrl-C, or errors.Stopped (a subclass) from the CLI's SIGTERM handler
            signal_name = getattr(e, "signal_name", None)
            msg = stopped_line(f"by {signal_name}" if signal_name else "by Ctrl-C", self.saved_at,
                               (self.epoch, self.step), self.epochs, s.steps, s.run_dir)
            if signal_name:
                e.args = (msg,)     # keep the Stopped (the CLI exits 128 + signal number), with the resume hint
                raise
            raise TrainingError(msg) from None
        finally:
            tb.close()
            if not s.engine.is_chief and sys.exc_info()[0] is not None:
                shutil.rmtree(s.out_dir, ignore_errors=True)


def continues_at(epoch: int, step: int) -> str:
    """Where a resume from a state saved at (0-based ``epoch``, ``step``) continues: ``epoch 4``
    or ``epoch 4, step 201``."""
    return f"epoch {epoch + 1}" + (f", step {step + 1}" if step else "")


def stopped_line(how: str, saved_at: tuple, at: tuple, epochs: int, steps: int, run_dir) -> str:
    """The one line of a stopped run: where it stopped (``at``: 0-based epoch, steps done), what
    the saved state holds (``saved_at``) and the command that continues from there."""
    epoch, step = saved_at
    if step:
        return (f"stopped {how} in epoch {at[0] + 1} of {epochs} (at step {at[1]} of {steps}); "
                f"{saved_words(epoch, step, steps)} are saved; continue with: kerascnn train --resume {run_dir} "
                f"(from {continues_at(epoch, step)})")
    saved = f"epochs 1-{epoch} are saved" if epoch else "no epoch was completed"
    return (f"stopped {how} after epoch {epoch} of {epochs}; {saved}; continue with: kerascnn train --resume {run_dir} "
            f"(from {continues_at(epoch, 0)})")


def saved_words(epoch: int, step: int, steps: int) -> str:
    """What a state saved at (0-based ``epoch``, ``step`` of ``steps``) holds, in words:
    ``epochs 1-3 and steps 1-200 of 400 of epoch 4``."""
    part = f"steps 1-{step} of {steps} of epoch {epoch + 1}"
    return f"epochs 1-{epoch} and {part}" if epoch else part
