"""The ONE place a run's options are merged, lowest first::

    field defaults < FAMILY_DEFAULTS[family] < --config FILE, or the resumed run's record < given

``given`` holds only what the user typed (the click command collects it; the Python API's
keyword arguments). Everything is checked before TensorFlow loads. ``TrainConfig`` (what the
options are) lives in ``config.py``; this module reads ``--config`` files and run records, so it
sits above ``record.py`` and ``resume.py``.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from kerascnn.errors import ConfigError, first_line
from kerascnn.training.config import (FAMILY_DEFAULTS, MAX_CONFIG_BYTES, TrainConfig, check, short,
                                      unknown_option)


# --------------------------------------------------------------------------- --config FILE
def _yaml_without_aliases(path: Path, text: str):
    """Parse YAML after checking its event stream (bounded by the file size) for aliases: an
    alias bomb expands a few hundred bytes into gigabytes, so aliases/anchors are refused."""
    import yaml

    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise ConfigError(f"--config {path}: YAML anchors and aliases (&name / *name) are not accepted; "
                              f"write the values out")
    return yaml.safe_load(text)


def read_mapping(path) -> dict:
    """A YAML or JSON file of options -> its mapping (bounded size, no YAML aliases, string keys,
    ``-`` in names read as ``_``); one-line ConfigError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config {path}: no such file")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"--config {path}: {size:,} bytes is too large for a configuration "
                          f"(at most {MAX_CONFIG_BYTES:,})")
    try:
        text = path.read_text()
        cfg = (_yaml_without_aliases(path, text) or {}) if path.suffix.lower() in (".yaml", ".yml") else json.loads(text)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"--config {path}: cannot parse ({e.__class__.__name__}: {first_line(e, 160, '')})") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"--config {path}: expected a mapping of option names to values")
    if any(not isinstance(k, str) for k in cfg):
        bad = next(k for k in cfg if not isinstance(k, str))
        raise ConfigError(f"--config {path}: option names must be strings; found {short(bad)}")
    return {k.replace("-", "_"): v for k, v in cfg.items()}


def load_config_file(path) -> dict:
    """The options of ``--config FILE``: a YAML/JSON mapping of options, or a run's config.json
    (read by ``RunRecord``: its results are not options, its engine is the ``backend``)."""
    from kerascnn.training.record import RunRecord

    cfg = read_mapping(path)
    known = TrainConfig.names()
    unknown = set(cfg) - set(known) - set(RunRecord.RESULT_KEYS)
    if unknown:
        raise unknown_option(sorted(unknown)[0], f"--config {path}")
    if set(cfg) & {"input_shape", "num_classes", "engine"}:       # a run's record: the options it holds
        recorded = RunRecord.from_dict(cfg, strict=True, source=path).options()
        out = {k: v for k, v in recorded.items() if k in cfg or (k == "backend" and "engine" in cfg)}
    else:
        out = {k: v for k, v in cfg.items() if k in known}
    out.pop("run_dir", None)   # a reproduced run gets a fresh directory
    return out


# --------------------------------------------------------------------------- the one merge
def resolve_config(given: dict, config_file=None, resume=None) -> TrainConfig:
    """The run's ``TrainConfig`` from field defaults < family defaults < ``config_file`` (or the
    record of the run being resumed, ``resume``) < ``given`` (what the user typed: option name ->
    value, ``model`` included; ``model_options`` may be ``-o KEY=VALUE`` strings). Everything is
    checked before TensorFlow loads. Raises ``resume.NothingToDo`` for a complete resumed run."""
    given = {k: v for k, v in given.items() if v is not None}
    for key in given:
        if key not in TrainConfig.names():
            raise unknown_option(key)
    if resume is not None:
        from kerascnn.training.resume import start

        lower = start(resume, given, config_file)
    else:
        lower = load_config_file(config_file) if config_file else {}
        if given.get("run_dir"):
            from kerascnn.training import rundir

            rundir.check_claimable(given["run_dir"])   # before TensorFlow loads; claimed for real later
    model = given.get("model") or lower.get("model")
    if not model:
        raise ConfigError("-o/--option needs a model" if given.get("model_options") else
                          "no model given: kerascnn train MODEL (or a --config with 'model')")
    from kerascnn.registry import get_entry

    entry = get_entry(model)
    typed = _typed(given, lower, entry)
    merged = {name: default for name, default, _ in TrainConfig.fields()}
    merged.update(FAMILY_DEFAULTS.get(entry.family, {}))
    merged.update(lower)
    merged.update(typed)
    merged["model"] = entry.name
    if merged.get("data"):
        merged["dataset"] = None     # a file or folder replaces the built-in data set
    if typed.get("weights") and "weights_preprocessing" not in typed:
        from kerascnn import pretrained as P

        merged["weights_preprocessing"] = P.default_preprocessing(typed["weights"], entry.name,
                                                                  merged.get("model_options"))
    if merged.get("backend") is None:
        merged["backend"] = "jax" if os.environ.get("KERAS_BACKEND") == "jax" else "tensorflow"
    config = TrainConfig(**merged)
    entry.arguments(None, None, config.model_options)  # unknown model options fail here
    _check_engine(config, typed, resume)
    return config


def _typed(given: dict, lower: dict, entry) -> dict:
    """What the user typed, typed and checked: ``-o`` pairs parsed for the model (on top of the
    lower layer's), paths made absolute (the run's config.json then works from any directory);
    another data source drops the lower layer's source and class names."""
    typed = {k: v for k, v in given.items() if k != "model"}
    if "model_options" in typed:
        from kerascnn.registry import parse_options

        pairs = typed["model_options"]
        typed["model_options"] = {**lower.get("model_options", {}),
                                  **(pairs if isinstance(pairs, dict) else parse_options(entry, pairs))}
    if typed.get("data") and typed.get("dataset"):
        raise ConfigError("give --dataset or --data, not both")
    if "data" in typed or "dataset" in typed:
        for key in ("data", "dataset", "class_names"):
            if key not in typed:
                lower.pop(key, None)
    if typed.get("data"):
        typed["data"] = str(Path(typed["data"]).resolve())
    weights = typed.get("weights")
    if weights and str(weights).lower() != "imagenet":
        if not Path(weights).is_file():
            raise ConfigError(f"--weights {weights}: no such file (or use --weights imagenet)")
        typed["weights"] = str(Path(weights).resolve())
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    return {name: check(fields[name], value) for name, value in typed.items()}


def _check_engine(config: TrainConfig, typed: dict, resume) -> None:
    """A resumed run keeps its engine; tf.distribute options are not for the JAX engine."""
    if resume is not None:
        from kerascnn.training.resume import check_engine

        check_engine(resume, config.backend)
    if config.backend == "jax":
        bad = [f"--{k}" for k in ("strategy", "gpus") if typed.get(k) not in (None, "auto")]
        if bad:
            raise ConfigError(f"{', '.join(bad)}: tf.distribute options, not for --backend jax (it uses every local "
                              f"device; limit GPUs with CUDA_VISIBLE_DEVICES)")
