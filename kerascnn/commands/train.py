"""`kerascnn train`: the click layer over ``kerascnn.train`` (``kerascnn.api``).

Its options are generated from ``TrainConfig``'s field declarations (kind, choices or bounds,
help): the command only collects what the user typed; defaults, merging and validation happen
once, in ``kerascnn.training.merge.resolve_config``.
"""
from __future__ import annotations

import click

from kerascnn.commands.common import IMAGE_SIZE, DataPath
from kerascnn.training.config import TrainConfig


def _click_type(name: str, opt):
    if opt.kind == "int":
        return click.IntRange(opt.lo, opt.hi)
    if opt.kind == "float":
        return click.FloatRange(opt.lo, opt.hi, min_open=opt.lo_open, max_open=opt.hi_open)
    if opt.kind == "choice":
        return click.Choice(list(opt.choices))
    if opt.kind == "path":
        return DataPath()
    if opt.kind == "size":
        return IMAGE_SIZE
    if name == "run_dir":
        return click.Path(file_okay=False)
    return None


def config_options(f):
    """One click option per ``TrainConfig`` field with ``cli`` set, in declaration order; every
    default None (not given), so the command passes on only what was typed."""
    for name, _, opt in reversed(TrainConfig.fields()):
        if not opt.cli:
            continue
        flags = list(opt.flags or (f"--{name.replace('_', '-')}",))
        kw = {"default": None, "help": opt.help or None, "metavar": opt.metavar}
        if opt.kind == "bool":
            flags = [f"{flags[0]}/--no-{flags[0][2:]}"]
        elif opt.kind == "flag":
            kw["is_flag"] = True
        elif opt.kind == "options":
            kw["multiple"] = True
        else:
            kw["type"] = _click_type(name, opt)
        f = click.option(*flags, name, **{k: v for k, v in kw.items() if v is not None or k == "default"})(f)
    return f


@click.command(short_help="Train a model; writes a run directory.")
@click.argument("model", required=False)
@config_options
@click.option("--resume", type=click.Path(exists=True, file_okay=False), default=None,
              help="Continue an interrupted run from its last completed epoch.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="YAML or JSON options (command-line options win); a run's config.json reproduces it.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def train(model, config_file, resume, quiet, **given):
    """Train MODEL (see `kerascnn list`) and write a run directory with config.json,
    history.csv, best.keras / last.keras, TensorBoard logs, curves.png and metrics.json.

    \b
    kerascnn train convnet                              digits, no network needed
    kerascnn train lenet5 --data mnist.npz --epochs 5
    kerascnn train resnet18 -o small_input=true --dataset cifar10 --image-size 32 --augment
    kerascnn train --resume runs/convnet-20261122-120000  after a crash
    """
    from kerascnn import api

    given = {k: v for k, v in given.items() if v not in (None, ())}
    run = api.train(model, config=config_file, resume=resume, echo=click.echo, progress=not quiet, **given)
    if run.note:          # a complete run resumed: nothing was done (the note was printed)
        return
    final, m = run.metrics["final"], run.metrics
    shown = ", ".join(f"{k} {final[k]:.4f}" for k in ("accuracy", "val_accuracy") if k in final)
    where = f"run directory {m['run_dir']}" if m["run_dir"] else "results written by the chief"
    click.echo(f"done: {shown}; best epoch {m['best_epoch']}; {m['wall_seconds']:.1f} s; {where}")
    click.echo(f"weights sha256 {m['weights_sha256']}")
    if m["run_dir"]:
        click.echo(f"next: kerascnn evaluate {m['run_dir']}   |   kerascnn export {m['run_dir']}")
