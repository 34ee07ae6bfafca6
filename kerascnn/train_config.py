"""Training options: defaults per model family, ``--config FILE`` (YAML/JSON), and merging.

Precedence: command-line options given explicitly > ``--config`` file (or the run's
``config.json`` when resuming) > per-family defaults > global defaults (the field defaults of
``kerascnn.train.options.TrainOptions``, their only home). The resolved
dictionary is what ``config.json`` records, so ``kerascnn train --config RUN/config.json``
trains the same thing again.
"""
from __future__ import annotations

import json
from pathlib import Path

from kerascnn.errors import ConfigError
from kerascnn.train.options import RESOLVED_KEYS, Optimizer, Precision, Schedule, Strategy, TrainOptions, choices


# Per-family defaults: small lecture nets train fast with Adam; deep nets with SGD + momentum.
FAMILY_DEFAULTS = {
    "lenet": {"lr": 1e-2},          # sigmoid LeNet needs a larger step (digits: 68% -> 98% val at 30 epochs)
    "resnet": {"optimizer": "sgd", "lr": 0.05, "weight_decay": 5e-4, "warmup_epochs": 1.0, "epochs": 30,
               "batch_size": 128},
    "vgg": {"optimizer": "adam", "lr": 1e-4, "epochs": 20},
    "alexnet": {"optimizer": "adam", "lr": 1e-4, "epochs": 20},
    "googlenet": {"optimizer": "adam", "lr": 1e-3, "epochs": 20},
    "nin": {"optimizer": "adam", "lr": 1e-3, "epochs": 20},
}

CHOICES = {
    "optimizer": tuple(choices(Optimizer)),
    "schedule": tuple(choices(Schedule)),
    "strategy": tuple(choices(Strategy)),
    "precision": (None, *choices(Precision)),
}
# keys recorded in config.json that are results, not options (older runs also wrote the last two)
RECORD_ONLY = (set(RESOLVED_KEYS) - set(TrainOptions.names())) | {"run_dir_resolved", "started"}


MAX_CONFIG_BYTES = 1 << 20  # a training configuration is a few hundred bytes; 1 MiB is generous


def short(value, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: messages never format unbounded input."""
    if isinstance(value, (list, tuple, dict)) and len(value) > 20:
        return f"<{type(value).__name__} of {len(value):,} items>"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10 ** 30:
        return f"<an integer of about {len(str(abs(value))) if abs(value) < 10 ** 4000 else 'more than 4,000'} digits>"
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _yaml_without_aliases(path: Path, text: str):
    """Parse YAML after checking its event stream (bounded by the file size) for aliases: an
    alias bomb expands a few hundred bytes into gigabytes, so aliases/anchors are refused."""
    import yaml

    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise ConfigError(f"--config {path}: YAML anchors and aliases (&name / *name) are not accepted; "
                              f"write the values out")
    return yaml.safe_load(text)


def load_config_file(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config {path}: no such file")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"--config {path}: {size:,} bytes is too large for a configuration "
                          f"(at most {MAX_CONFIG_BYTES:,})")
    try:
        text = path.read_text()
        if path.suffix.lower() in (".yaml", ".yml"):
            cfg = _yaml_without_aliases(path, text) or {}
        else:
            cfg = json.loads(text)
    except ConfigError:
        raise
    except Exception as e:
        first = (str(e).splitlines() or [""])[0]
        raise ConfigError(f"--config {path}: cannot parse ({e.__class__.__name__}: {first[:160]})") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"--config {path}: expected a mapping of option names to values")
    if any(not isinstance(k, str) for k in cfg):
        bad = next(k for k in cfg if not isinstance(k, str))
        raise ConfigError(f"--config {path}: option names must be strings; found {short(bad)}")
    cfg = {k.replace("-", "_"): v for k, v in cfg.items()}
    known = TrainOptions.names()
    unknown = set(cfg) - set(known) - RECORD_ONLY
    if unknown:
        raise ConfigError(f"--config {path}: unknown option {short(sorted(unknown)[0])}; "
                          f"known: {', '.join(sorted(known))}")
    return {k: v for k, v in cfg.items() if k in known}


def resolve(cli: dict, file_cfg: dict | None = None) -> dict:
    """Merge defaults < family defaults < config file < explicit command-line options."""
    file_cfg = dict(file_cfg or {})
    model = cli.get("model") or file_cfg.get("model")
    if not model:
        raise ConfigError("no model given: kerascnn train MODEL (or a --config with 'model')")
    from kerascnn.registry import get_entry

    entry = get_entry(model)
    cfg = TrainOptions.defaults()
    cfg.update(FAMILY_DEFAULTS.get(entry.family, {}))
    cfg.update(file_cfg)
    cfg.update({k: v for k, v in cli.items() if v is not None})
    cfg["model"] = model
    file_source = file_cfg.get("data") is not None or "dataset" in file_cfg
    new_source = any(key in cli and cli[key] != file_cfg.get(key) for key in ("data", "dataset"))
    if file_source and new_source and cli.get("class_names") is None:
        cfg["class_names"] = None  # e.g. a run's config.json with another --data: its names belong to the old data
    from kerascnn.data import parse_class_names

    cfg["class_names"] = parse_class_names(cfg["class_names"])
    for key, allowed in CHOICES.items():
        if cfg.get(key) not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(a for a in allowed if a)}; "
                              f"received {short(cfg.get(key))}")
    for key, lo in (("epochs", 1), ("batch_size", 1), ("steps_per_call", 1)):
        if key == "steps_per_call" and cfg[key] is None:
            continue
        if not isinstance(cfg[key], int) or cfg[key] < lo:
            raise ConfigError(f"{key} must be an integer >= {lo}; received {short(cfg[key])}")
    for key in ("lr", "weight_decay", "label_smoothing", "warmup_epochs", "momentum"):
        try:
            cfg[key] = float(cfg[key])
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a number; received {short(cfg[key])}") from None
    if not cfg["lr"] > 0:
        raise ConfigError(f"lr must be > 0; received {short(cfg['lr'])}")
    if not 0 <= cfg["label_smoothing"] < 1:
        raise ConfigError(f"label_smoothing must be in [0, 1); received {short(cfg['label_smoothing'])}")
    if not 0 <= float(cfg["val_split"]) < 1:
        raise ConfigError(f"val_split must be in [0, 1); received {short(cfg['val_split'])}")
    if cfg["weight_decay"] < 0 or cfg["warmup_epochs"] < 0:
        raise ConfigError("weight_decay and warmup_epochs must be >= 0")
    if cfg["image_size"] is not None:
        size = cfg["image_size"]
        size = [size, size] if isinstance(size, int) else list(size)
        if len(size) == 1:
            size = size * 2
        if len(size) != 2 or any(not isinstance(v, int) or v < 1 for v in size):
            raise ConfigError(f"image_size must be H,W positive integers; received {short(cfg['image_size'])}")
        cfg["image_size"] = size
    cfg["model_options"] = dict(cfg.get("model_options") or {})
    entry.resolve(None, None, cfg["model_options"])  # unknown model options fail here
    return cfg
