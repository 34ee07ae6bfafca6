"""``TrainConfig``: every option of a training run, typed, declared once (pure Python).

Each field declares its default, its kind (and choices or bounds) and its help text once, in
``option(...)``; from that one declaration come the validation (``TrainConfig.__post_init__``),
the click options of ``kerascnn train`` (``kerascnn.commands.train``), the keyword arguments of
``kerascnn.train(...)`` and the keys of ``RUN/config.json`` (``kerascnn.training.record``). Choice
lists live in Enums. Per-family defaults stay data (``FAMILY_DEFAULTS``).

``resolve_config`` is the ONE place options are merged, lowest first::

    field defaults < FAMILY_DEFAULTS[family] < --config FILE, or the resumed run's record < given

``given`` holds only what the user typed (the click command collects it; the Python API's
keyword arguments). Unknown keys are answered with the nearest valid one
("unknown option 'lerning_rate' (did you mean 'lr'?)").
"""
from __future__ import annotations

import dataclasses
import difflib
import enum
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from kerascnn.errors import ConfigError


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


class Backend(str, enum.Enum):
    TENSORFLOW = "tensorflow"
    JAX = "jax"


def choices(kind) -> list:
    """The values of an option Enum (or a tuple of strings), in order."""
    return [m.value if isinstance(m, enum.Enum) else m for m in kind]


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

# names people often write for an option (answered "did you mean ...?", never accepted silently)
ALIASES = {"learning_rate": "lr", "batch": "batch_size", "epoch": "epochs", "n_epochs": "epochs",
           "random_seed": "seed", "validation_split": "val_split", "backbone_weights": "weights",
           "mixed_precision": "precision", "dtype_policy": "precision", "xla": "jit", "engine": "backend"}

MAX_CONFIG_BYTES = 1 << 20  # a training configuration is a few hundred bytes; 1 MiB is generous


# --------------------------------------------------------------------------- one declaration per option
@dataclass(frozen=True)
class Option:
    """What a ``TrainConfig`` field accepts: its kind (int, float, choice, bool, flag, text, size,
    names, options, path, weights, unfreeze, every), choices or bounds, and its command-line form."""
    kind: str
    help: str = ""
    choices: tuple = ()
    lo: Optional[float] = None
    hi: Optional[float] = None
    lo_open: bool = False
    hi_open: bool = False
    flags: tuple = ()           # command-line spellings when not --name-with-dashes
    metavar: Optional[str] = None
    cli: bool = True            # a `kerascnn train` option
    recorded: bool = True       # written to config.json under its own name


def option(default, kind: str, **meta):
    meta = {"option": Option(kind, **{k: tuple(choices(v)) if k == "choices" else v for k, v in meta.items()})}
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class TrainConfig:
    """A training run's options, resolved and validated (``resolve_config``); frozen."""
    model: Optional[str] = option(None, "text", cli=False)
    model_options: dict = option({}, "options", flags=("-o", "--option"), metavar="KEY=VALUE",
                                 help="Model option, e.g. -o small_input=true (see `kerascnn list --format json`).")
    dataset: Optional[str] = option("digits", "choice", choices=Dataset,
                                    help="Built-in data set (default: digits, bundled with scikit-learn, no network).")
    data: Optional[str] = option(None, "path", help="A .npz file (x_train, y_train, x_test, y_test), a folder with "
                                 "one sub-folder per class, or TFRecord shards (a folder of them or a glob: "
                                 "'shards/train-*').")
    class_names: Optional[tuple] = option(None, "names", metavar="FILE|a,b,c",
                                          help="Names of the classes, in label order: a file with one name per line, "
                                               "or a comma list; recorded in the run (default: the data's own names, "
                                               "or 0..K-1).")
    image_size: Optional[tuple] = option(None, "size", metavar="H,W",
                                         help="Resize images to this size (default: the model's natural input).")
    epochs: int = option(30, "int", lo=1, hi=100_000, help="Epochs (default per model family).")
    batch_size: int = option(128, "int", lo=1, hi=1_000_000,
                             help="Global batch size, split across replicas (default 128).")
    optimizer: str = option("adam", "choice", choices=Optimizer)
    lr: float = option(1e-3, "float", lo=0, lo_open=True, help="Peak learning rate.")
    momentum: float = option(0.9, "float", cli=False)
    schedule: str = option("cosine", "choice", choices=Schedule, help="Learning-rate schedule (default cosine).")
    warmup_epochs: float = option(0.0, "float", lo=0, help="Linear warm-up length.")
    weight_decay: float = option(0.0, "float", lo=0)
    label_smoothing: float = option(0.0, "float", lo=0, hi=1, hi_open=True)
    seed: int = option(1234, "int", lo=0, hi=2**31 - 1, help="Seed (default 1234).")
    val_split: float = option(0.1, "float", lo=0, hi=1, hi_open=True,
                              help="Fraction of the training data held out for validation (default 0.1).")
    augment: bool = option(False, "bool", help="Random crop + horizontal flip (natural images).")
    stream: str = option("auto", "choice", choices=("auto", "on", "off"),
                         help="Read --data DIR / manifest / TFRecord images from disk batch by batch (auto: when "
                              "they would take more than half the available memory as float32; default auto).")
    bad_files: str = option("stop", "choice", choices=("stop", "skip"),
                            help="Streaming: stop at the first unreadable image (default), or skip them and list "
                                 "them in the run directory (bad_files.txt).")
    cache: Optional[str] = option(None, "choice", choices=("memory", "disk"),
                                  help="Streaming: decode every image once (first epoch), then train from the decoded "
                                       "copy held in memory or in the run directory (cache-*.npy, deleted at the "
                                       "end).")
    strategy: str = option("auto", "choice", choices=Strategy,
                           help="tf.distribute strategy (auto: multiworker with TF_CONFIG, mirrored with 2+ GPUs).")
    gpus: Optional[str] = option(None, "text", metavar="0,1", help="Use only these GPUs.")
    precision: Optional[str] = option(None, "choice", choices=Precision,
                                      help="Keras dtype policy (default: mixed_bfloat16 on GPUs and bf16 CPUs where "
                                           "the model is wide enough to gain, mixed_float16 on older GPUs, else "
                                           "float32).")
    jit: Optional[bool] = option(None, "bool", help="XLA compilation (default: on for one GPU, off on CPU).")
    backend: Optional[str] = option(None, "choice", choices=Backend, recorded=False,
                                    help="Training engine: tensorflow (tf.distribute, the default) or jax (Keras on "
                                         "JAX, all local devices; default when KERAS_BACKEND=jax). A resumed run "
                                         "keeps its engine.")
    steps_per_call: Optional[int] = option(None, "int", lo=1, hi=10_000,
                                           help="Training steps per tf.function call (default: adaptive, about half a "
                                                "second of work per call; 16 under multi-worker).")
    save_every: Optional[str] = option(None, "every", metavar="N|10m|epoch",
                                       help="Also save the training state within an epoch: every N steps "
                                            "(e.g. 500), or every so long (90s, 10m, 1.5h); epoch: only at epoch "
                                            "ends (default: every 10 minutes; with several workers only at epoch "
                                            "ends, and a time is refused). --resume continues at the saved step.")
    deterministic: bool = option(False, "flag", help="TensorFlow op determinism (bitwise repeatable).")
    run_dir: Optional[str] = option(None, "text", help="Where to write the run (default runs/MODEL-TIMESTAMP).")
    runs_root: str = option("runs", "text", cli=False)
    weights: Optional[str] = option(None, "weights", metavar="FILE|imagenet",
                                    help="Start from pretrained weights: a keras.applications .h5 (or Keras "
                                         ".weights.h5), a torchvision/timm .safetensors or .pth, or imagenet for the "
                                         "file in the Keras cache (~/.keras/models); a head for other classes is new.")
    weights_preprocessing: Optional[str] = option(None, "choice", choices=("caffe", "torch", "tf", "raw", "none"),
                                                  flags=("--preprocessing", "--weights-preprocessing"),
                                                  help="Input preprocessing inside the model (default: the weights' "
                                                       "own: caffe for keras.applications files, torch for "
                                                       "torchvision/timm, tf for GoogLeNet's).")
    freeze_epochs: int = option(0, "int", lo=0, hi=100_000,
                                help="Fine-tuning: train only the head (backbone frozen, BatchNorm in inference mode) "
                                     "for N epochs, then unfreeze at 0.1x the learning rate (default 0: train "
                                     "everything from the start).")
    unfreeze: str = option("all", "unfreeze", metavar="all|N",
                           help="After --freeze-epochs: unfreeze all backbone layers (default) or the last N.")

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None:
                object.__setattr__(self, f.name, check(f, value))

    # ------------------------------------------------------------------ the declaration, read back
    @classmethod
    def fields(cls) -> list:
        """(name, default, Option) of every option, in declaration order."""
        return [(f.name, f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default,
                 f.metadata["option"]) for f in dataclasses.fields(cls)]

    @classmethod
    def names(cls) -> list:
        return [f.name for f in dataclasses.fields(cls)]

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The recorded options (config.json's option keys, in declaration order), JSON-ready."""
        out = {}
        for name, _, opt in self.fields():
            if opt.recorded:
                value = getattr(self, name)
                out[name] = list(value) if isinstance(value, tuple) else dict(value) if isinstance(value, dict) else value
        return out


def short(value, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: messages never format unbounded input."""
    if isinstance(value, (list, tuple, dict)) and len(value) > 20:
        return f"<{type(value).__name__} of {len(value):,} items>"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10 ** 30:
        return f"<an integer of about {len(str(abs(value))) if abs(value) < 10 ** 4000 else 'more than 4,000'} digits>"
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _num(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _check_range(name: str, value, opt: Option, what: str):
    lo, hi = opt.lo, opt.hi
    low = lo is not None and (value <= lo if opt.lo_open else value < lo)
    high = hi is not None and (value >= hi if opt.hi_open else value > hi)
    if not (low or high):
        return value
    if what == "an integer":
        bound = f">= {_num(lo)}" if low else f"<= {_num(hi)}"
        raise ConfigError(f"{name} must be an integer {bound}; received {short(value)}")
    if lo is not None and hi is not None:
        bound = f"in {'(' if opt.lo_open else '['}{_num(lo)}, {_num(hi)}{')' if opt.hi_open else ']'}"
    else:
        bound = f"{'>' if opt.lo_open else '>='} {_num(lo)}" if lo is not None else f"<= {_num(hi)}"
    raise ConfigError(f"{name} must be {bound}; received {short(value)}")


def check(f, value):
    """One field's value, validated and normalised by its ``Option`` (one-line ConfigError)."""
    name, opt = f.name, f.metadata["option"]
    kind = opt.kind
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer >= {_num(opt.lo)}; received {short(value)}")
        return _check_range(name, value, opt, "an integer")
    if kind == "float":
        try:
            value = float(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{name} must be a number; received {short(value)}") from None
        if value != value:
            raise ConfigError(f"{name} must be a number; received {short(value)}")
        return _check_range(name, value, opt, "a number")
    if kind == "choice":
        value = value.value if isinstance(value, enum.Enum) else value
        if value not in opt.choices:
            raise ConfigError(f"{name} must be one of {', '.join(opt.choices)}; received {short(value)}")
        return value
    if kind in ("bool", "flag"):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false; received {short(value)}")
        return value
    if kind == "size":
        return _image_size(value)
    if kind == "names":
        from kerascnn.data import parse_class_names

        return tuple(parse_class_names(value))
    if kind == "options":
        if not isinstance(value, dict) or any(not isinstance(k, str) for k in value):
            raise ConfigError(f"{name} must be a mapping of option names to values; received {short(value)}")
        return dict(value)
    if kind == "every":
        from kerascnn.training.savepoints import normalise

        return normalise(value)
    if kind == "unfreeze":
        from kerascnn.training.finetune import parse_unfreeze

        return parse_unfreeze(value)
    if value is not None and not isinstance(value, str):     # text, path, weights
        raise ConfigError(f"{name} must be a string; received {short(value)}")
    return value


def _image_size(value) -> tuple:
    size = [value, value] if isinstance(value, int) and not isinstance(value, bool) else value
    try:
        size = list(size)
    except TypeError:
        size = None
    if size is not None and len(size) == 1:
        size = size * 2
    if size is None or len(size) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in size):
        raise ConfigError(f"image_size must be H,W positive integers; received {short(value)}")
    return tuple(size)


def unknown_option(key: str, where: str = "") -> ConfigError:
    """'unknown option 'lerning_rate' (did you mean 'lr'?)': the nearest option or alias."""
    names = TrainConfig.names()
    near = difflib.get_close_matches(str(key), names + list(ALIASES), n=1, cutoff=0.6)
    prefix = f"{where}: " if where else ""
    if near:
        return ConfigError(f"{prefix}unknown option {short(key)} (did you mean {ALIASES.get(near[0], near[0])!r}?)")
    return ConfigError(f"{prefix}unknown option {short(key)}; known: {', '.join(sorted(names))}")


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
        first = (str(e).splitlines() or [""])[0]
        raise ConfigError(f"--config {path}: cannot parse ({e.__class__.__name__}: {first[:160]})") from None
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
