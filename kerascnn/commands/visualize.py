"""`kerascnn visualize`."""
from __future__ import annotations

import click

KINDS = ["filters", "activations", "mistakes", "curves", "confusion", "receptive-field", "edges", "architecture"]


@click.command(short_help="Draw filters, activations, mistakes, curves, receptive fields, edges.")
@click.argument("kind", type=click.Choice(KINDS), metavar="KIND")
@click.argument("model_or_run", required=False)
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="PNG file to write.")
@click.option("--layer", default=None, help="Layer to show (filters, receptive-field).")
@click.option("--image", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Input image (activations, receptive-field, edges).")
@click.option("--index", type=click.IntRange(min=0), default=0, show_default=True,
              help="Else this test image of the data set.")
@click.option("--dataset", type=click.Choice(["digits", "mnist", "fashion_mnist", "cifar10", "cifar100"]),
              default=None, help="Data set (default: the run's own).")
@click.option("--data", "data_path", type=click.Path(exists=True), default=None, help="A .npz file or class folder.")
@click.option("--max-maps", type=click.IntRange(1, 64), default=12, show_default=True,
              help="Channels per layer (activations).")
@click.option("--unsafe", is_flag=True, help="Allow loading models that contain code (Lambda layers).")
def visualize(kind, model_or_run, out, layer, image, index, dataset, data_path, max_maps, unsafe):
    """Draw KIND for MODEL_OR_RUN (a run directory, a .keras file or a model name) into --out.

    \b
    filters          first conv's kernels (or --layer); RGB kernels in colour
    activations      feature maps of every conv/pool layer for --image or --index
    mistakes         the most confident misclassified test images
    curves           training curves of a run
    confusion        confusion matrix (the run's last evaluation, or computed)
    receptive-field  the input region one unit of --layer sees, with its size
    edges            a fixed Sobel Gx/Gy pair applied by a Conv2D (no MODEL_OR_RUN; digits
                     unless --image, --dataset or --data)
    architecture     diagram via keras.utils.plot_model (needs pydot + Graphviz)
    """
    from kerascnn.commands.common import load_tensorflow
    from kerascnn.errors import ConfigError

    if kind != "edges" and not model_or_run:
        raise ConfigError(f"visualize {kind} needs MODEL_OR_RUN (a run directory, a .keras file or a model name)")
    if kind == "architecture":
        from kerascnn.visualize import check_architecture_tools

        check_architecture_tools()
    if model_or_run:
        from kerascnn.runs import check_model_ref

        check_model_ref(model_or_run)
    load_tensorflow()
    from kerascnn import visualize as V

    if kind == "edges":
        path = V.edges(out, image, index, dataset, data_path)
        click.echo(f"wrote {path}")
        return
    from kerascnn.runs import resolve_model

    model, info = resolve_model(model_or_run, unsafe=unsafe)
    if kind == "filters":
        path = V.filters(model, out, layer)
        if info.run_dir is None and info.model_path is None:
            click.echo(f"note: {model_or_run} is an untrained model: these are its random initial weights "
                       f"(train it first, then pass the run directory)")
    elif kind == "activations":
        x, shown, label = V._input_image(model, info, image, index, dataset, data_path)
        path = V.activations(model, out, x, shown, label, max_maps)
    elif kind == "mistakes":
        path = V.mistakes(model, info, out, dataset, data_path)
    elif kind == "curves":
        path = V.curves(info, out)
    elif kind == "confusion":
        path = V.confusion(model, info, out, dataset, data_path)
    elif kind == "receptive-field":
        x, shown, label = V._input_image(model, info, image, index, dataset, data_path)
        path = V.receptive_field(model, info, out, layer, x, shown, label)
    else:
        path = V.architecture(model, out)
    click.echo(f"wrote {path}")
