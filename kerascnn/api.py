"""The Python API for the whole workflow; each ``kerascnn`` command is a thin layer over it.

    import kerascnn
    run = kerascnn.train("convnet", epochs=3, run_dir="runs/nb", seed=1, quiet=True)  # bundled digits
    run.history[-1].val_accuracy ; run.dir ; run.record.config.seed
    ev = kerascnn.evaluate(run)            # or a path "runs/nb"
    ev.accuracy ; ev.confusion
    preds = kerascnn.predict(run, ["docs/samples/digit-3.png"], top_k=3)
    exp = kerascnn.export(run, out="saved_models/nb")

``train``'s keyword arguments are ``TrainConfig``'s fields (the ``kerascnn train`` long options
with ``_``); they are merged and checked exactly as on the command line
(``training.merge.resolve_config``: defaults < family defaults < ``config`` file or the resumed
run < keywords), and an unknown keyword is answered with the nearest option. The other
functions take the keywords of their commands. Everything is checked before TensorFlow loads.
Results are objects a notebook shows as tables (``kerascnn.results``); ``quiet=True`` prints
nothing, ``echo=`` receives every line instead of ``print``.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

from kerascnn.results import Epoch, Evaluation, Export, Predictions, Run


def _ref(model_or_run) -> str:
    """A ``Run`` -> its directory; an ``Export`` -> its path; anything else as a string."""
    if isinstance(model_or_run, Run):
        return str(model_or_run.dir)
    if isinstance(model_or_run, Export):
        return str(model_or_run.path)
    return str(model_or_run)


def _echo(quiet: bool, echo):
    return (lambda *a, **k: None) if quiet else (echo or print)


def _load_tensorflow() -> None:
    from kerascnn.tfquiet import import_tensorflow_if_installed

    import_tensorflow_if_installed()


def _pretrained_options(ref: str, weights, options, others: str = "a run or .keras file"):
    """The typed model options of a registered MODEL given with ``weights`` or ``options`` (``-o``
    strings or a dict); None when neither is given. ``others`` have their own model."""
    if not (weights or options):
        return None
    from kerascnn.errors import ConfigError
    from kerascnn.registry import is_model, model_ref

    if not is_model(ref):
        raise ConfigError(f"--weights and -o apply to a registered model name ({others} has its own)")
    return model_ref(ref, options).options


# --------------------------------------------------------------------------- train
def train(model=None, *, config=None, resume=None, quiet: bool = False, echo=None, progress=None,
          **options) -> Run:
    """Train ``model`` (a registered name) and return the ``Run``. ``options``: ``TrainConfig``
    fields (``epochs=3, lr=1e-3, data="x.npz", run_dir="runs/a", backend="jax", ...``);
    ``config``: a YAML/JSON file (a run's config.json reproduces it) or a mapping; ``resume``: a
    run directory to continue. ``progress`` (default: not ``quiet``) shows progress bars."""
    from kerascnn import training
    from kerascnn.training.merge import resolve_config
    from kerascnn.training.resume import NothingToDo

    echo = _echo(quiet, echo)
    try:
        cfg = resolve_config(dict(options, model=model), config_file=config, resume=resume)
    except NothingToDo as done:
        echo(str(done))
        run = load_run(resume)
        run.note = str(done)
        return run
    outcome = training.run(cfg, resume=resume, echo=echo, verbose=int(not quiet if progress is None else progress))
    m = outcome.metrics
    return Run(Path(m["run_dir"]) if m["run_dir"] else None, outcome.record,
               [Epoch.from_row(r) for r in outcome.history], m)


def load_run(path) -> Run:
    """A run directory written by ``kerascnn train`` (or ``kerascnn.train``), read back."""
    from kerascnn.plots import _read_history_csv
    from kerascnn.training.record import RunRecord

    path = Path(path)
    record = RunRecord.load(path)
    history = [Epoch.from_row(r) for r in _read_history_csv(path / "history.csv")] \
        if (path / "history.csv").is_file() else []
    metrics = json.loads((path / "metrics.json").read_text()) if (path / "metrics.json").is_file() else {}
    return Run(path, record, history, metrics)


# --------------------------------------------------------------------------- evaluate, predict, export
def evaluate(model_or_run, *, dataset=None, data=None, split: str = "test", batch_size: int = 256, out=None,
             which: str = "best", class_names=None, unsafe: bool = False, weights=None, preprocessing=None,
             model_options=None, echo=None) -> Evaluation:
    """Loss, top-1/top-k accuracy, per-class metrics and the confusion matrix of a run (or a
    ``.keras`` file, or a registered model) on its data's test split (or ``dataset``/``data``);
    written to ``out`` (default RUN/eval-DATA-SPLIT). ``echo`` receives data warnings."""
    from kerascnn.runs import check_model_ref

    ref = _ref(model_or_run)
    check_model_ref(ref)
    opts = _pretrained_options(ref, weights, model_options)
    if class_names is not None:
        from kerascnn.data import parse_class_names

        class_names = parse_class_names(class_names)
    _load_tensorflow()
    from kerascnn.data import echo_warnings
    from kerascnn.evaluation import evaluate as run

    with echo_warnings(echo) if echo else contextlib.nullcontext():
        return Evaluation(run(ref, dataset, data, split, batch_size, out, unsafe, which, class_names,
                              weights=weights, preprocessing=preprocessing, options=opts))


def iter_predict(model_or_export, images, *, top_k: int = 5, class_names=None, unsafe: bool = False, weights=None,
                 preprocessing=None, model_options=None, report=None):
    """``predict``'s rows one at a time (a folder of any size in bounded memory). ``report(notes)``: called
    once before the first row with the preprocessing that runs (and a warning for an untrained model)."""
    from kerascnn.prediction import is_savedmodel_dir, iter_predictions
    from kerascnn.runs import check_model_ref

    ref = _ref(model_or_export)
    from kerascnn.exporter import recover

    recover(Path(ref))   # an export a crashed `export --force` moved aside goes back first
    if not is_savedmodel_dir(ref):
        check_model_ref(ref)
    opts = _pretrained_options(ref, weights, model_options, "a run, .keras file or export")
    if class_names is not None:
        from kerascnn.data import parse_class_names

        class_names = parse_class_names(class_names)
    _load_tensorflow()
    return iter_predictions(ref, [str(i) for i in images], top_k, unsafe, class_names, weights=weights,
                            preprocessing=preprocessing, options=opts, report=report)


def predict(model_or_export, images, *, top_k: int = 5, class_names=None, unsafe: bool = False, weights=None,
            preprocessing=None, model_options=None) -> Predictions:
    """Top-k classes of image files (or folders) from a run, a ``.keras`` file, a registered model or
    a SavedModel written by ``export``."""
    return Predictions(list(iter_predict(model_or_export, images, top_k=top_k, class_names=class_names,
                                         unsafe=unsafe, weights=weights, preprocessing=preprocessing,
                                         model_options=model_options)))


def export(model_or_run, *, out=None, force: bool = False, to: str = "savedmodel", which: str = "best",
           fuse_bn: bool = False, unsafe: bool = False, weights=None, preprocessing=None,
           model_options=None) -> Export:
    """A verified SavedModel (``to="onnx"``/``"litert"``: those formats) that serves without
    kerascnn, written to ``out`` (default saved_models/NAME); ``force`` replaces an earlier export."""
    from kerascnn.exporter import export as run
    from kerascnn.exporter import precheck

    ref = _ref(model_or_run)
    opts = _pretrained_options(ref, weights, model_options)
    precheck(ref, out, force, to, fuse_bn)
    _load_tensorflow()
    return Export(run(ref, None if out is None else str(out), force, to, which, fuse_bn, unsafe, weights=weights,
                      preprocessing=preprocessing, options=opts))
