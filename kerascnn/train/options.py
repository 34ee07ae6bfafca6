"""Typed records of a training run (pure Python).

* ``TrainOptions``: what the user asked for, resolved (defaults < family defaults < ``--config``
  < command line, see ``train_config.resolve``); one frozen dataclass. Its choices are Enums,
  which also generate the click choices of ``kerascnn train``.
* ``RunRecord``: the options plus what the run resolved (input shape, classes and their names,
  preprocessing, devices, versions) and the changes a ``--resume`` made. It is the ONLY reader
  and writer of ``RUN/config.json``; evaluate, predict, export and visualize get the
  preprocessing (``pixel_scale``, input shape) from it through ``kerascnn.runs``.

``config.json`` stays one flat JSON object (options and resolved values side by side), so
``kerascnn train --config RUN/config.json`` reproduces a run and the config.json of older
runs (no ``changes``, no ``engine``) still reads.
"""
from __future__ import annotations

import dataclasses
import enum
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from kerascnn.errors import ConfigError, DataError

CONFIG_FILE = "config.json"


class Optimizer(str, enum.Enum):
    SGD = "sgd"
    ADAM = "adam"
    ADAMW = "adamw"


class Schedule(str, enum.Enum):
    CONSTANT = "constant"
    COSINE = "cosine"
    ONECYCLE = "onecycle"


class Strategy(str, enum.Enum):
    AUTO = "auto"
    DEFAULT = "default"
    ONEDEVICE = "onedevice"
    MIRRORED = "mirrored"
    MULTIWORKER = "multiworker"


class Precision(str, enum.Enum):
    FLOAT32 = "float32"
    MIXED_FLOAT16 = "mixed_float16"
    MIXED_BFLOAT16 = "mixed_bfloat16"


class Dataset(str, enum.Enum):
    DIGITS = "digits"
    MNIST = "mnist"
    FASHION_MNIST = "fashion_mnist"
    CIFAR10 = "cifar10"
    CIFAR100 = "cifar100"


def parse_class_names(value) -> list:
    """``--class-names``: a list, a file (one name per line, or a JSON list), or a comma list ``a,b,c``
    (one parser for every command: ``kerascnn.data.parse_class_names``)."""
    from kerascnn.data import parse_class_names as parse

    return parse(value)


def choices(kind: type[enum.Enum]) -> list:
    """The values of an option Enum, in order (for ``click.Choice``)."""
    return [m.value for m in kind]


@dataclass(frozen=True)
class TrainOptions:
    model: str
    model_options: dict = field(default_factory=dict)
    dataset: Optional[str] = "digits"
    data: Optional[str] = None
    class_names: Optional[tuple] = None      # names for the data's classes; default: the data's own
    image_size: Optional[tuple] = None       # default: the model's natural input size
    epochs: int = 30
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    seed: int = 1234
    val_split: float = 0.1
    augment: bool = False
    stream: str = "auto"                     # auto | on | off: decode --data DIR / manifest from disk per batch
    bad_files: str = "stop"                  # stop | skip (streaming: bad images counted, listed in the run dir)
    cache: Optional[str] = None              # streaming: memory | disk (decode once, then read the decoded copy)
    strategy: str = "auto"
    gpus: Optional[str] = None
    precision: Optional[str] = None          # default: per device and model width (train.policy)
    jit: Optional[bool] = None               # default: on for one GPU, off on CPU and for MirroredStrategy
    steps_per_call: Optional[int] = None     # default: adaptive, about CALL_SECONDS of work (16 multi-worker)
    deterministic: bool = False
    run_dir: Optional[str] = None
    runs_root: str = "runs"
    weights: Optional[str] = None                  # --weights FILE|imagenet: the starting point
    weights_preprocessing: Optional[str] = None    # caffe | torch | tf | none (kerascnn.pretrained.default_preprocessing)
    freeze_epochs: int = 0                         # fine-tuning: epochs with the backbone frozen (train.finetune)
    unfreeze: str = "all"                          # then: all, or the last N backbone layers

    def __post_init__(self):
        for name, kind in (("optimizer", Optimizer), ("schedule", Schedule), ("strategy", Strategy)):
            object.__setattr__(self, name, kind(getattr(self, name)).value)
        if self.stream not in ("auto", "on", "off"):
            raise ConfigError(f"stream must be auto, on or off; received {self.stream!r}")
        if self.cache not in (None, "memory", "disk"):
            raise ConfigError(f"cache must be memory or disk; received {self.cache!r}")
        if self.bad_files not in ("stop", "skip"):
            raise ConfigError(f"bad_files must be stop or skip; received {self.bad_files!r}")
        if self.precision is not None:
            object.__setattr__(self, "precision", Precision(self.precision).value)
        if self.image_size is not None:
            object.__setattr__(self, "image_size", tuple(self.image_size))
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(parse_class_names(self.class_names)))

    @classmethod
    def names(cls) -> list:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def defaults(cls) -> dict:
        """Every option's default, as a fresh dict (``model``, which has none: None); the global
        defaults ``train_config.resolve`` starts from."""
        return {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING
                         else None if f.default is dataclasses.MISSING else f.default)
                for f in dataclasses.fields(cls)}

    @classmethod
    def from_dict(cls, cfg: dict) -> "TrainOptions":
        known = set(cls.names())
        return cls(**{k: v for k, v in cfg.items() if k in known})

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["image_size"] = list(self.image_size) if self.image_size is not None else None
        out["class_names"] = list(self.class_names) if self.class_names is not None else None
        return out


# results of a run, recorded beside the options
RESOLVED_KEYS = ("input_shape", "num_classes", "class_names", "pixel_scale", "data_name", "train_images",
                 "val_images", "versions", "engine", "strategy_resolved", "replicas", "devices",
                 "precision_resolved", "jit_resolved", "kerascnn_command", "changes", "finetune")


@dataclass
class RunRecord:
    options: TrainOptions
    input_shape: tuple
    num_classes: int
    class_names: list
    pixel_scale: float = 1.0 / 255.0
    resolved: dict = field(default_factory=dict)    # data_name, devices, versions, precision, command, ...
    changes: list = field(default_factory=list)     # [{"epoch", "option", "from", "to", "command"}]

    # ------------------------------------------------------------------ building
    @classmethod
    def new(cls, cfg, input_shape, data, train_images: int, val_images: int, resolved: dict) -> "RunRecord":
        opts = cfg if isinstance(cfg, TrainOptions) else TrainOptions.from_dict(cfg)
        if "batch_size" in resolved:     # the batch actually used (lowered for tiny data sets)
            opts = dataclasses.replace(opts, batch_size=int(resolved["batch_size"]))
        if "run_dir" in resolved:
            opts = dataclasses.replace(opts, run_dir=resolved["run_dir"])
        extra = {k: v for k, v in resolved.items() if k not in ("batch_size", "run_dir")}
        extra.update(data_name=data.name, train_images=int(train_images), val_images=int(val_images))
        names = list(opts.class_names) if opts.class_names else list(data.class_names)
        return cls(opts, tuple(input_shape), int(data.num_classes), names,
                   float(data.pixel_scale), extra)

    def resumed_from(self, old: "RunRecord", epoch: int, keys) -> list:
        """Carry ``old``'s history of changes and command; record which of ``keys`` this resume
        changes, effective from ``epoch`` (1-based). Returns the new changes."""
        import sys

        new = [{"epoch": epoch, "option": k, "from": getattr(old.options, k), "to": getattr(self.options, k)}
               for k in keys if getattr(old.options, k) != getattr(self.options, k)]
        command = " ".join(["kerascnn"] + sys.argv[1:])
        self.changes = list(old.changes) + [dict(c, command=command) for c in new]
        if "kerascnn_command" in old.resolved:
            self.resolved["kerascnn_command"] = old.resolved["kerascnn_command"]
        return new

    @property
    def preprocessing(self) -> dict:
        """What a model of this run expects: images resized to ``input_shape`` and multiplied by ``pixel_scale``."""
        return {"input_shape": list(self.input_shape), "pixel_scale": self.pixel_scale}

    # ------------------------------------------------------------------ config.json
    def to_dict(self) -> dict:
        out = self.options.to_dict()
        out.update(input_shape=list(self.input_shape), num_classes=self.num_classes,
                   class_names=list(self.class_names), pixel_scale=self.pixel_scale)
        out.update(self.resolved)
        if self.changes:
            out["changes"] = self.changes
        return out

    @classmethod
    def from_dict(cls, cfg: dict, strict: bool = False, source="config.json") -> "RunRecord":
        """Any config.json kerascnn ever wrote (older ones lack ``changes`` and ``engine``). With
        ``strict`` (resuming) options that do not read are an error naming ``source``; otherwise
        (evaluate, predict, ...) the record keeps what reads."""
        opts = {k: cfg[k] for k in TrainOptions.names() if k in cfg}
        opts["model"] = cfg.get("model") or "model"
        try:
            options = TrainOptions.from_dict(opts)
        except (TypeError, ValueError, AttributeError) as e:
            if strict:
                raise DataError(f"{source}: the recorded options do not read ({str(e).splitlines()[0][:120]})") from None
            options = TrainOptions(model=str(cfg.get("model") or "model"))
        k = int(cfg.get("num_classes", 0) or 0)
        names = cfg.get("class_names") or [str(i) for i in range(k)]
        resolved = {key: cfg[key] for key in RESOLVED_KEYS if key in cfg
                    and key not in ("input_shape", "num_classes", "class_names", "pixel_scale", "changes")}
        return cls(options, tuple(cfg.get("input_shape") or ()), k, list(names),
                   float(cfg.get("pixel_scale", 1 / 255)), resolved, list(cfg.get("changes") or []))

    @classmethod
    def read_json(cls, run_dir) -> dict:
        path = Path(run_dir) / CONFIG_FILE
        try:
            cfg = json.loads(path.read_text())
        except FileNotFoundError:
            raise DataError(f"{path}: no such file; is {run_dir} a kerascnn run directory?") from None
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: cannot read the run configuration ({e})") from None
        if not isinstance(cfg, dict):
            raise DataError(f"{path}: cannot read the run configuration (not a JSON object)")
        return cfg

    @classmethod
    def load(cls, run_dir, strict: bool = False) -> "RunRecord":
        return cls.from_dict(cls.read_json(run_dir), strict, Path(run_dir) / CONFIG_FILE)

    def save(self, run_dir) -> None:
        from kerascnn import fsutil

        fsutil.atomic_write_json(Path(run_dir) / CONFIG_FILE, self.to_dict())
