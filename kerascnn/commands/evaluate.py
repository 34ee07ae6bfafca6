"""`kerascnn evaluate`."""
from __future__ import annotations

import click

from kerascnn.commands.common import DataPath, class_names_option, echo_json, format_option, pretrained_options


@click.command(short_help="Loss, top-1/top-5, per-class metrics, confusion matrix.")
@click.argument("model_or_run")
@click.option("--dataset", type=click.Choice(["digits", "mnist", "fashion_mnist", "cifar10", "cifar100"]),
              default=None, help="Built-in data set (default: the run's own).")
@click.option("--data", type=DataPath(), default=None,
              help="A .npz file, a class-folder directory or TFRecord shards (a folder or a glob).")
@click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True)
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=256, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Where to write metrics.json, confusion.json/png (default RUN/eval-DATA-SPLIT).")
@click.option("--which", type=click.Choice(["best", "last"]), default="best", show_default=True,
              help="Which model of a run directory: best by validation, or the last epoch's.")
@class_names_option
@click.option("--unsafe", is_flag=True, help="Allow loading models that contain code (Lambda layers).")
@pretrained_options
@format_option
def evaluate(model_or_run, dataset, data, split, batch_size, out_dir, which, class_names, unsafe, fmt,
             weights, preprocessing, options):
    """Evaluate MODEL_OR_RUN (a run directory, a .keras file or a model name) on the test split."""
    from kerascnn import api
    from kerascnn.report import table

    r = api.evaluate(model_or_run, dataset=dataset, data=data, split=split, batch_size=batch_size, out=out_dir,
                     which=which, class_names=class_names, unsafe=unsafe, weights=weights,
                     preprocessing=preprocessing, model_options=options, echo=click.echo).as_dict()
    if fmt == "json":
        echo_json(r)
        return
    model = r["model"] + (f" ({r['model_file']})" if "model_file" in r else "")
    click.echo(f"{model} on {r['data']} ({r['split']}, {r['images']} images)")
    if "preprocessing" in r:
        click.echo(f"preprocessing: {r['preprocessing']}")
    if "warning" in r:
        click.echo(f"warning: {r['warning']}", err=True)
    line = f"loss {r['loss']:.4f}  accuracy {r['accuracy']:.4f}"
    for top in (3, 5):
        if f"top{top}_accuracy" in r:
            line += f"  top-{top} {r[f'top{top}_accuracy']:.4f}"
    click.echo(line + f"  macro F1 {r['macro_f1']:.4f}")
    click.echo(table(["Class", "Precision", "Recall", "F1", "Support"],
                     [[c["class"], f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}", c["support"]]
                      for c in r["per_class"]], "lrrrr"))
    click.echo(f"wrote {r['out_dir']}/metrics.json, confusion.json, confusion.png")
