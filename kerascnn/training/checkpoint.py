"""The training state ``RUN/backup/state.npz``: one file, written atomically, read back exactly.

After every epoch the full state (model weights ``w{i}``, Dropout seed states ``g{i}``,
optimizer variables ``o:<path>`` including the step counter that drives the learning-rate
schedule, and a JSON ``meta`` record: epoch (the last completed, 0-based), best score, history,
optimizer) is written as ONE ``.npz`` through an atomic rename, so a kill at any instant leaves
the previous complete state. A state saved inside an epoch (``--save-every``,
``kerascnn.training.savepoints``) is the same file with three more ``meta`` keys: ``step`` (steps
of the next epoch done), ``steps`` (per epoch) and ``totals`` (that epoch's running float32
[loss, correct, count] sums); a state without them (every older kerascnn's) continues at the
start of the next epoch. Keras's ``BackupAndRestore`` is not used: it writes weights and epoch metadata
as two files in place (a kill between them tears the state) and deletes its backup when
training ends "normally", e.g. after ``TerminateOnNaN`` (reliability.md section 1).

A state that cannot be used -- damaged, from another model, missing a variable, from another
optimizer -- is refused in one line that names the file; it never restarts the run.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kerascnn import fsutil
from kerascnn.errors import ConfigError, DataError, TrainingError, first_line, short


def save_state(path: Path, state: dict, meta: dict) -> None:
    arrays = dict(state)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with fsutil.atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def load_state(path: Path, engine, optimizer_name: str) -> dict:
    """Restore the engine's weights and optimizer state from ``path``; returns ``meta``. The
    learning rate itself comes from the current options."""
    path = Path(path)
    try:
        from kerascnn.data import check_npz_headers

        check_npz_headers(path)   # sizes from the member headers: nothing decompressed before it fits
    except DataError as e:
        raise TrainingError(str(e)) from None
    except Exception as e:
        raise TrainingError(f"{path}: cannot read the training state ({e.__class__.__name__}); it is damaged") from None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            state = {k: z[k] for k in z.files if k != "meta"}
        int(meta["epoch"])
    except Exception as e:
        raise TrainingError(f"{path}: cannot read the training state ({e.__class__.__name__}); it does not match "
                            f"this model or is damaged") from None
    if meta.get("optimizer", optimizer_name) != optimizer_name:
        raise ConfigError(f"the run was trained with {meta['optimizer']}; resuming with {optimizer_name} is not "
                          f"supported (start a new run instead)")
    weights = engine.model.weights
    saved = sorted((k for k in state if k[:1] == "w" and k[1:].isdigit()), key=lambda k: int(k[1:]))
    if len(saved) != len(weights):
        raise TrainingError(f"{path}: the training state holds {len(saved)} weight arrays and this model has "
                            f"{len(weights)}; it belongs to another model")
    for i, w in enumerate(weights):
        got = state.get(f"w{i}")
        if got is None:
            raise TrainingError(f"{path}: the training state has no w{i} ({w.path}); it is damaged")
        if tuple(got.shape) != tuple(w.shape):
            raise TrainingError(f"{path}: w{i} ({w.path}) has shape {tuple(got.shape)} in the training state and "
                                f"{tuple(w.shape)} in this model; the state belongs to another model")
    state = _match_optimizer_keys(state, engine.get_state())
    try:
        engine.set_state(state)
    except KeyError as e:
        raise TrainingError(f"{path}: {e.args[0] if e.args else e}; the state is from another optimizer or "
                            f"damaged") from None
    except ValueError as e:
        raise TrainingError(f"{path}: the training state does not fit this model or optimizer "
                            f"({first_line(e, 120)})") from None
    return meta


def _match_optimizer_keys(state: dict, current: dict) -> dict:
    """Optimizer variables are keyed by their path, which holds Keras's generated layer names
    (``dense_2``): equal in a fresh process, not when a second model was built before in the
    same one. When the names differ but the variables agree one by one in order and shape, the
    saved values are matched by position."""
    saved = [k for k in state if k.startswith("o:")]
    wanted = [k for k in current if k.startswith("o:")]
    if set(saved) == set(wanted) or len(saved) != len(wanted):
        return state
    if any(np.shape(state[a]) != np.shape(current[b]) for a, b in zip(saved, wanted)):
        return state
    out = {k: v for k, v in state.items() if not k.startswith("o:")}
    out.update({b: state[a] for a, b in zip(saved, wanted)})
    return out


def position(path: Path, meta: dict, steps: int) -> tuple:
    """(step, running sums) a state's ``meta`` continues from inside its next epoch; (0, None) for
    a state saved at an epoch end. A step that does not fit this run's ``steps`` per epoch (the
    data changed) or damaged sums are refused in one line."""
    step = meta.get("step", 0)
    if not step:
        return 0, None
    saved, totals = meta.get("steps"), meta.get("totals")
    ok = (isinstance(step, int) and 0 < step < steps and saved == steps and isinstance(totals, list)
          and len(totals) == 3 and all(isinstance(t, (int, float)) for t in totals))
    if not ok:
        raise TrainingError(f"{path}: saved at step {short(step, 24)} of an epoch of {short(saved, 24)} steps, but this run "
                            f"has {steps} steps per epoch (did the data change?); it cannot continue exactly")
    return step, [float(t) for t in totals]




def weights_digest(model) -> str:
    """SHA-256 of every weight's bytes: equal digests mean bitwise-equal models (e.g. across workers)."""
    import hashlib

    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()
