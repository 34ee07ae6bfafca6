"""The end of a run: the final metrics (``metrics.json``), the curves (``curves.png``), the
decoded cache removed; a non-chief worker's temporary directory removed."""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass

import numpy as np

from kerascnn import fsutil
from kerascnn.training import checkpoint


@dataclass
class Outcome:
    """A finished run: its metrics (what metrics.json holds), its record and its history rows."""
    metrics: dict
    record: object
    history: list


def finish(session, loop) -> Outcome:
    """Write what a finished run promises and return its ``Outcome``."""
    s, engine = session, session.engine
    engine.sync_to_model()
    history = s.history
    metrics = {
        "model": s.entry.name, "epochs": int(s.config.epochs), "final": history[-1] if history else {},
        "best_epoch": int(np.argmax([h.get("val_accuracy", h["accuracy"]) for h in history]) + 1) if history else None,
        "best_score": s.best, "wall_seconds": round(time.time() - s.started, 2),
        "train_images_per_second": round(loop.images_seen / loop.train_seconds, 1) if loop.train_seconds else None,
        "run_dir": str(s.run_dir) if engine.is_chief else None, "weights_sha256": checkpoint.weights_digest(engine.model),
    }
    if not engine.is_chief:
        shutil.rmtree(s.out_dir, ignore_errors=True)
        return Outcome(metrics, s.record, history)
    fsutil.atomic_write_json(s.run_dir / "metrics.json", metrics)
    for path in s.cache_files:   # --cache disk: written by this run, done with
        if path.is_file():
            path.unlink()
    try:
        from kerascnn.plots import plot_curves

        plot_curves(history, s.run_dir / "curves.png")
    except ImportError:
        pass
    return Outcome(metrics, s.record, history)
