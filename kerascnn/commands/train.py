"""`kerascnn train`: the click layer over ``kerascnn.training``."""
from __future__ import annotations

from pathlib import Path

import click

from kerascnn.commands.common import IMAGE_SIZE, PREPROCESSING, DataPath, model_options
from kerascnn.train.options import Dataset, Optimizer, Precision, Schedule, Strategy, choices


@click.command(short_help="Train a model; writes a run directory.")
@click.argument("model", required=False)
@click.option("--dataset", type=click.Choice(choices(Dataset)),
              default=None, help="Built-in data set (default: digits, bundled with scikit-learn, no network).")
@click.option("--data", type=DataPath(), default=None,
              help="A .npz file (x_train, y_train, x_test, y_test), a folder with one sub-folder per class, "
                   "or TFRecord shards (a folder of them or a glob: 'shards/train-*').")
@click.option("--class-names", default=None, metavar="FILE|a,b,c",
              help="Names of the classes, in label order: a file with one name per line, or a comma list; "
                   "recorded in the run (default: the data's own names, or 0..K-1).")
@click.option("--image-size", type=IMAGE_SIZE, default=None, metavar="H,W",
              help="Resize images to this size (default: the model's natural input).")
@model_options
@click.option("--epochs", type=click.IntRange(1, 100_000), default=None, help="Epochs (default per model family).")
@click.option("--batch-size", type=click.IntRange(1, 1_000_000), default=None,
              help="Global batch size, split across replicas (default 128).")
@click.option("--optimizer", type=click.Choice(choices(Optimizer)), default=None)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="Peak learning rate.")
@click.option("--schedule", type=click.Choice(choices(Schedule)), default=None,
              help="Learning-rate schedule (default cosine).")
@click.option("--warmup-epochs", type=click.FloatRange(min=0), default=None, help="Linear warm-up length.")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=None)
@click.option("--label-smoothing", type=click.FloatRange(0, 1, max_open=True), default=None)
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=None, help="Seed (default 1234).")
@click.option("--val-split", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Fraction of the training data held out for validation (default 0.1).")
@click.option("--augment/--no-augment", default=None, help="Random crop + horizontal flip (natural images).")
@click.option("--stream", type=click.Choice(["auto", "on", "off"]), default=None,
              help="Read --data DIR / manifest / TFRecord images from disk batch by batch (auto: when they would take "
                   "more than half the available memory as float32; default auto).")
@click.option("--cache", type=click.Choice(["memory", "disk"]), default=None,
              help="Streaming: decode every image once (first epoch), then train from the decoded copy held in "
                   "memory or in the run directory (cache-*.npy, deleted at the end).")
@click.option("--bad-files", type=click.Choice(["stop", "skip"]), default=None,
              help="Streaming: stop at the first unreadable image (default), or skip them and list them in "
                   "the run directory (bad_files.txt).")
@click.option("--strategy", type=click.Choice(choices(Strategy)),
              default=None, help="tf.distribute strategy (auto: multiworker with TF_CONFIG, mirrored with 2+ GPUs).")
@click.option("--gpus", default=None, metavar="0,1", help="Use only these GPUs.")
@click.option("--precision", type=click.Choice(choices(Precision)), default=None,
              help="Keras dtype policy (default: mixed_bfloat16 on GPUs and bf16 CPUs where the model is wide "
                   "enough to gain, mixed_float16 on older GPUs, else float32).")
@click.option("--jit/--no-jit", default=None, help="XLA compilation (default: on for one GPU, off on CPU).")
@click.option("--backend", type=click.Choice(["tensorflow", "jax"]), default=None,
              help="Training engine: tensorflow (tf.distribute, the default) or jax (Keras on JAX, all local "
                   "devices; default when KERAS_BACKEND=jax). A resumed run keeps its engine.")
@click.option("--steps-per-call", type=click.IntRange(1, 10_000), default=None,
              help="Training steps per tf.function call (default: adaptive, about half a second of work "
                   "per call; 16 under multi-worker).")
@click.option("--deterministic", is_flag=True, default=None, help="TensorFlow op determinism (bitwise repeatable).")
@click.option("--run-dir", type=click.Path(file_okay=False), default=None,
              help="Where to write the run (default runs/MODEL-TIMESTAMP).")
@click.option("--resume", type=click.Path(exists=True, file_okay=False), default=None,
              help="Continue an interrupted run from its last completed epoch.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="YAML or JSON options (command-line options win); a run's config.json reproduces it.")
@click.option("--weights", default=None, metavar="FILE|imagenet",
              help="Start from pretrained weights: a keras.applications .h5 (or Keras .weights.h5), a torchvision/timm "
                   ".safetensors or .pth, or imagenet for the file in the Keras cache (~/.keras/models); a head "
                   "for other classes is new.")
@click.option("--preprocessing", "weights_preprocessing", type=PREPROCESSING,
              default=None, help="Input preprocessing inside the model (default: the weights' own: caffe for "
                                 "keras.applications files, torch for torchvision/timm, tf for GoogLeNet's).")
@click.option("--freeze-epochs", type=click.IntRange(0, 100_000), default=None,
              help="Fine-tuning: train only the head (backbone frozen, BatchNorm in inference mode) for N epochs, "
                   "then unfreeze at 0.1x the learning rate (default 0: train everything from the start).")
@click.option("--unfreeze", default=None, metavar="all|N",
              help="After --freeze-epochs: unfreeze all backbone layers (default) or the last N.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def train(model, config_file, resume, quiet, options, backend, **opts):
    """Train MODEL (see `kerascnn list`) and write a run directory with config.json,
    history.csv, best.keras / last.keras, TensorBoard logs, curves.png and metrics.json.

    \b
    kerascnn train convnet                              digits, no network needed
    kerascnn train lenet5 --data mnist.npz --epochs 5
    kerascnn train resnet18 -o small_input=true --dataset cifar10 --image-size 32 --augment
    kerascnn train --resume runs/convnet-20261122-120000  after a crash
    """
    from kerascnn import train_config
    from kerascnn.errors import ConfigError
    from kerascnn.registry import resolve

    file_cfg = {}
    if resume:
        from kerascnn.train import resume as R

        start = R.start(resume, model, opts, config_file, options)
        if start.nothing_to_do:
            click.echo(start.nothing_to_do)
            return
        file_cfg = dict(start.recorded)
    elif config_file:
        file_cfg = train_config.load_config_file(config_file)
        file_cfg.pop("run_dir", None)  # a reproduced run gets a fresh directory
    if opts.get("run_dir"):
        from kerascnn.train import rundir

        rundir.check_claimable(opts["run_dir"])   # before TensorFlow loads; claimed for real later
    cli = {k: v for k, v in opts.items() if v is not None}
    if model:
        cli["model"] = model
    if "image_size" in cli:
        cli["image_size"] = list(cli["image_size"]) * (2 if len(cli["image_size"]) == 1 else 1)
    name = cli.get("model") or file_cfg.get("model")
    if options:
        if not name:
            raise ConfigError("-o/--option needs a model")
        cli["model_options"] = {**file_cfg.get("model_options", {}), **resolve(name, options).options}
    if cli.get("data"):
        if cli.get("dataset"):
            raise ConfigError("give --dataset or --data, not both")
        cli["data"] = str(Path(cli["data"]).resolve())  # the run's config.json then works from any directory
    elif cli.get("dataset"):
        file_cfg.pop("data", None)
    if ("data" in cli or "dataset" in cli) and "class_names" not in cli:
        file_cfg.pop("class_names", None)   # another data source: the recorded names belong to the old one
    if "class_names" in cli:
        from kerascnn.train.options import parse_class_names

        cli["class_names"] = parse_class_names(cli["class_names"])   # one-line error before TensorFlow loads
    if cli.get("weights"):
        from kerascnn import pretrained as P

        if cli["weights"].lower() != "imagenet":
            if not Path(cli["weights"]).is_file():
                raise ConfigError(f"--weights {cli['weights']}: no such file (or use --weights imagenet)")
            cli["weights"] = str(Path(cli["weights"]).resolve())
        cli.setdefault("weights_preprocessing", P.default_preprocessing(
            cli["weights"], name, cli.get("model_options", file_cfg.get("model_options"))))
    if "unfreeze" in cli:
        from kerascnn.train.finetune import parse_unfreeze

        cli["unfreeze"] = parse_unfreeze(cli["unfreeze"])
    cfg = train_config.resolve(cli, file_cfg)
    if cfg.get("data"):
        cfg["dataset"] = None  # a file or folder replaces the built-in data set
    make_engine = _engine_factory(backend, resume, config_file, cli)
    from kerascnn.commands.common import load_tensorflow
    from kerascnn.train.options import TrainOptions

    if make_engine is None:      # the TensorFlow engine; the JAX engine imports it only to stream (tf.data)
        load_tensorflow()
    from kerascnn.training import train as run

    try:
        options = TrainOptions.from_dict(cfg)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    metrics = run(options, resume=resume, echo=click.echo, verbose=0 if quiet else 1, make_engine=make_engine)
    final = metrics["final"]
    shown = ", ".join(f"{k} {final[k]:.4f}" for k in ("accuracy", "val_accuracy") if k in final)
    where = f"run directory {metrics['run_dir']}" if metrics["run_dir"] else "results written by the chief"
    click.echo(f"done: {shown}; best epoch {metrics['best_epoch']}; {metrics['wall_seconds']:.1f} s; {where}")
    click.echo(f"weights sha256 {metrics['weights_sha256']}")
    if metrics["run_dir"]:
        click.echo(f"next: kerascnn evaluate {metrics['run_dir']}   |   kerascnn export {metrics['run_dir']}")


def _engine_factory(backend, resume, config_file, cli):
    """None (the TensorFlow engine) or the JAX engine's factory; the process runs with the Keras
    backend the engine needs (re-executed with KERAS_BACKEND set when keras was loaded already).
    Default: the engine recorded by the resumed run (or the ``--config`` run), else KERAS_BACKEND."""
    import os

    from kerascnn.commands.bench import _select_backend
    from kerascnn.errors import ConfigError
    from kerascnn.train.resume import check_engine, recorded_engine

    recorded = recorded_engine(Path(resume) / "config.json") if resume else None
    reproduced = recorded_engine(config_file) if config_file and not resume else None
    backend = backend or recorded or reproduced or ("jax" if os.environ.get("KERAS_BACKEND") == "jax"
                                                    else "tensorflow")
    if resume:
        check_engine(resume, backend)
    if backend == "jax":
        bad = [f"--{k}" for k in ("strategy", "gpus") if cli.get(k) not in (None, "auto")]
        if bad:
            raise ConfigError(f"{', '.join(bad)}: tf.distribute options, not for --backend jax (it uses every local "
                              f"device; limit GPUs with CUDA_VISIBLE_DEVICES)")
    _select_backend(backend)
    if backend != "jax":
        return None
    from kerascnn.engines.jax import make_engine

    return make_engine
