"""``RunRecord``: what a run is -- its ``TrainConfig`` plus what it resolved -- and the ONLY
reader and writer of ``RUN/config.json`` (pure Python).

Every command that reads a run goes through it: ``train --resume`` and ``--config``, evaluate,
predict, export and visualize (through ``kerascnn.runs.resolve_model``), and the Python API
(``kerascnn.load_run``). A model without a run (a registered name, a ``.keras`` file alone)
gets a record too (``RunRecord.for_model``), whose options are ``TrainConfig``'s defaults, so
no reader ever invents a default of its own (the seed is 1234 everywhere).

``config.json`` stays one flat JSON object -- the recorded options in declaration order, then
``input_shape``, ``num_classes``, ``pixel_scale`` and the resolved values (data name, devices,
versions, precision, command, ...) -- so ``kerascnn train --config RUN/config.json`` reproduces a
run and the config.json of older runs (no ``changes``, no ``engine``) still reads. The engine
is recorded as ``engine`` and read back as the config's ``backend``.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Optional

from kerascnn.errors import DataError, KerasCNNError
from kerascnn.training.config import Backend, TrainConfig, check, choices

CONFIG_FILE = "config.json"


def is_run_dir(path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / CONFIG_FILE).is_file()


@dataclass
class RunRecord:
    config: TrainConfig
    input_shape: tuple
    num_classes: int
    class_names: list
    pixel_scale: float = 1.0 / 255.0
    resolved: dict = field(default_factory=dict)    # data_name, devices, versions, precision, command, ...
    changes: list = field(default_factory=list)     # [{"epoch", "option", "from", "to", "command"}]
    run_dir: Optional[Path] = None                  # where it was read from (not recorded)
    model_path: Optional[Path] = None               # the model file read with it (not recorded)

    # keys config.json holds beside the options: results of the run, not options
    RESULT_KEYS: ClassVar[tuple] = (
        "input_shape", "num_classes", "class_names", "pixel_scale", "data_name", "train_images", "val_images",
        "versions", "engine", "strategy_resolved", "replicas", "devices", "precision_resolved", "jit_resolved",
        "kerascnn_command", "changes", "finetune", "run_dir_resolved", "started")

    # ------------------------------------------------------------------ building
    @classmethod
    def new(cls, config: TrainConfig, input_shape, data, train_images: int, val_images: int,
            resolved: dict) -> "RunRecord":
        """The record of a run starting now: ``resolved`` holds what setup resolved, in the order
        config.json shows it (``batch_size`` and ``run_dir``, when given, replace the options')."""
        changes = {k: resolved[k] for k in ("batch_size", "run_dir") if k in resolved}
        config = config.replace(**changes) if changes else config
        extra = {k: v for k, v in resolved.items() if k not in ("batch_size", "run_dir")}
        extra.update(data_name=data.name, train_images=int(train_images), val_images=int(val_images))
        names = list(config.class_names) if config.class_names else list(data.class_names)
        return cls(config, tuple(input_shape), int(data.num_classes), names, float(data.pixel_scale), extra)

    @classmethod
    def for_model(cls, name: str, input_shape, num_classes: int, model_options=None, model_path=None,
                  class_names=None) -> "RunRecord":
        """A model without a run: a registered name or a ``.keras`` file alone. Its options are
        ``TrainConfig``'s defaults (data, seed, ...), its classes ``class_names`` or 0..K-1."""
        k = int(num_classes)
        config = TrainConfig(model=str(name), model_options=dict(model_options or {}))
        return cls(config, tuple(input_shape), k, list(class_names or [str(i) for i in range(k)]),
                   model_path=Path(model_path) if model_path else None)

    def resumed_from(self, old: "RunRecord", epoch: int, keys, step: Optional[int] = None) -> list:
        """Carry ``old``'s history of changes and command; record which of ``keys`` this resume
        changes, effective from ``epoch`` (1-based; from its ``step``, 1-based, when it resumes
        inside the epoch). Returns the new changes."""
        import sys

        where = {"epoch": epoch, **({"step": step} if step else {})}
        new = [{**where, "option": k, "from": getattr(old.config, k), "to": getattr(self.config, k)}
               for k in keys if getattr(old.config, k) != getattr(self.config, k)]
        command = " ".join(["kerascnn"] + sys.argv[1:])
        self.changes = list(old.changes) + [dict(c, command=command) for c in new]
        if "kerascnn_command" in old.resolved:
            self.resolved["kerascnn_command"] = old.resolved["kerascnn_command"]
        return new

    # ------------------------------------------------------------------ reading
    @property
    def model_name(self) -> str:
        return self.config.model or "model"

    def options(self) -> dict:
        """The run's options as a layer of ``resolve_config`` (``--resume RUN``, ``--config
        RUN/config.json``): the recorded options, the class names among them, and the engine."""
        return dict(self.config.to_dict(), backend=self.config.backend)

    @property
    def preprocessing(self) -> dict:
        """What a model of this run expects: images resized to ``input_shape`` and multiplied by ``pixel_scale``."""
        return {"input_shape": list(self.input_shape), "pixel_scale": self.pixel_scale}

    # ------------------------------------------------------------------ config.json
    def to_dict(self) -> dict:
        out = self.config.to_dict()
        out.update(input_shape=list(self.input_shape), num_classes=self.num_classes,
                   class_names=list(self.class_names), pixel_scale=self.pixel_scale)
        out.update(self.resolved)
        if self.changes:
            out["changes"] = self.changes
        return out

    @classmethod
    def from_dict(cls, cfg: dict, strict: bool = False, source="config.json") -> "RunRecord":
        """Any config.json kerascnn ever wrote. With ``strict`` (resuming) options that do not
        read are an error naming ``source``; otherwise (evaluate, predict, ...) an option that
        does not read keeps its default and the rest is kept."""
        opts = {k: cfg[k] for k in TrainConfig.names() if k in cfg}
        opts["model"] = str(cfg.get("model") or "model")
        if cfg.get("engine") in choices(Backend):
            opts["backend"] = cfg["engine"]
        try:
            config = TrainConfig(**opts)
        except (KerasCNNError, TypeError, ValueError, AttributeError) as e:
            if strict:
                raise DataError(f"{source}: the recorded options do not read ({str(e).splitlines()[0][:120]})") from None
            config = TrainConfig(**_readable(opts))
        k = int(cfg.get("num_classes", 0) or 0)
        names = cfg.get("class_names") or [str(i) for i in range(k)]
        resolved = {key: cfg[key] for key in cls.RESULT_KEYS if key in cfg
                    and key not in ("input_shape", "num_classes", "class_names", "pixel_scale", "changes")}
        return cls(config, tuple(cfg.get("input_shape") or ()), k, list(names),
                   float(cfg.get("pixel_scale", 1 / 255)), resolved, list(cfg.get("changes") or []))

    @classmethod
    def load(cls, run_dir, strict: bool = False) -> "RunRecord":
        path = Path(run_dir) / CONFIG_FILE
        try:
            cfg = json.loads(path.read_text())
        except FileNotFoundError:
            raise DataError(f"{path}: no such file; is {run_dir} a kerascnn run directory?") from None
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: cannot read the run configuration ({e})") from None
        if not isinstance(cfg, dict):
            raise DataError(f"{path}: cannot read the run configuration (not a JSON object)")
        return dataclasses.replace(cls.from_dict(cfg, strict, path), run_dir=Path(run_dir))

    def save(self, run_dir) -> None:
        from kerascnn import fsutil

        fsutil.atomic_write_json(Path(run_dir) / CONFIG_FILE, self.to_dict())


def _readable(opts: dict) -> dict:
    """The options of ``opts`` that read on their own (the others keep their defaults)."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    out = {}
    for name, value in opts.items():
        try:
            out[name] = value if value is None else check(fields[name], value)
        except (KerasCNNError, TypeError, ValueError, AttributeError):
            continue
    return out
