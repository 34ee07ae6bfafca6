"""The rules of ``kerascnn train --resume RUN`` (pure Python, before TensorFlow loads).

A resumed run keeps what it means: its model, data, model options, directory and engine. Only
``RESUME_CHANGES`` may change (recorded in config.json's ``changes`` with the epoch they took
effect, see ``RunRecord.resumed_from``); ``RESUME_RUNTIME`` only says how to run and is not
recorded; anything else is refused in one line that says how to start a new run instead.
"""
from __future__ import annotations

from kerascnn.errors import ConfigError
from kerascnn.training import rundir

RESUME_CHANGES = ("epochs", "lr", "schedule")
RESUME_RUNTIME = ("strategy", "gpus", "precision", "jit", "steps_per_call", "save_every", "deterministic", "backend")


class NothingToDo(Exception):
    """``--resume RUN`` of a run that is complete and asked for nothing more (the message says so;
    not an error: the command prints it and exits 0)."""


def refuse_changes(run_dir, given: set, model_options) -> None:
    """Refuse (one line) options other than RESUME_CHANGES and RESUME_RUNTIME; ``given`` holds the
    option names given on the command line (``config`` for ``--config``), ``model_options`` -o."""
    if "config" in given or "run_dir" in given:
        flag = "--config" if "config" in given else "--run-dir"
        raise ConfigError(f"{flag} cannot be used with --resume (the run {run_dir} keeps its own options and "
                          f"directory)")
    bad = sorted(k for k in given if k not in RESUME_CHANGES + RESUME_RUNTIME) + (["option"] if model_options else [])
    if bad:
        flags = ", ".join("--" + k.replace("_", "-") for k in bad)
        raise ConfigError(f"{flags} cannot change with --resume (it would change what the run {run_dir} means); "
                          f"with --resume only {', '.join('--' + k for k in RESUME_CHANGES)} may change; start a "
                          f"new run with --config {run_dir}/config.json for other options")


def start(run_dir, given: dict, config_file=None) -> dict:
    """Check a ``--resume run_dir`` against the options ``given`` (name -> value, ``model``
    included) and return the run's recorded options (the lower layer of ``resolve_config``, its
    directory left out); a one-line ConfigError otherwise, ``NothingToDo`` for a complete run."""
    from kerascnn.training.record import RunRecord, is_run_dir

    if not is_run_dir(run_dir):
        raise ConfigError(f"--resume {run_dir}: not a kerascnn run directory (no config.json)")
    record = RunRecord.load(run_dir, strict=True)      # the run record: the only reader of config.json
    recorded = record.options()
    model = given.get("model")
    if model and model != recorded.get("model"):
        raise ConfigError(f"--resume {run_dir} is a {recorded.get('model')} run, not {model}")
    names = {k for k, v in given.items() if v is not None and k not in ("model", "model_options")}
    refuse_changes(run_dir, names | ({"config"} if config_file else set()), given.get("model_options"))
    recorded.pop("run_dir", None)
    epochs = given.get("epochs")
    if rundir.check_resumable(run_dir):
        done = int(rundir.read_state_meta(run_dir)["epoch"]) + 1
        planned = int(recorded.get("epochs") or 0)
        if epochs is None and done >= planned:
            raise NothingToDo(f"{run_dir} is complete ({done} of {planned} epochs); nothing to do and nothing "
                              f"changed. To train it further, pass --epochs N with N larger than {done}.")
        if epochs is not None and epochs <= done:
            raise ConfigError(f"--resume {run_dir} already has {done} epochs; --epochs {epochs} would "
                              f"not extend it (pass a number larger than {done})")
    return recorded


def check_engine(run_dir, backend: str) -> None:
    """A run resumes exactly only on the engine that trained it."""
    from kerascnn.training.record import RunRecord

    recorded = RunRecord.load(run_dir).config.backend
    if recorded and backend != recorded:
        raise ConfigError(f"--resume {run_dir} was trained with the {recorded} engine; it resumes exactly only on "
                          f"that engine (--backend {recorded})")
