"""`kerascnn predict`."""
from __future__ import annotations

import click

from kerascnn.commands.common import class_names_option, echo_json, format_option, pretrained_options


@click.command(short_help="Top-k classes for image files.")
@click.argument("model_or_export")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--top-k", type=click.IntRange(1, 1000), default=5, show_default=True)
@class_names_option
@click.option("--unsafe", is_flag=True, help="Allow models that contain code: Lambda layers (.keras), ops "
              "outside the classifier allowlist such as file access (SavedModel).")
@pretrained_options
@format_option
def predict(model_or_export, images, top_k, class_names, unsafe, fmt, weights, preprocessing, options):
    """Classify IMAGES (files or folders) with MODEL_OR_EXPORT: a run directory, a .keras
    file, or a SavedModel exported by `kerascnn export`."""
    from kerascnn import api

    said = {}   # the preprocessing that runs (and a warning): lines first (stderr), or in every JSON row

    def shown(notes):
        said.update(notes)
        if fmt != "json":
            for key, text in notes.items():
                click.echo(f"{key}: {text}", err=True)

    rows = api.iter_predict(model_or_export, images, top_k=top_k, class_names=class_names, unsafe=unsafe,
                            weights=weights, preprocessing=preprocessing, model_options=options, report=shown)
    if fmt == "json":  # one row at a time (a folder of any size): the same text as echo_json(list)
        rows = ({**row, **said} for row in rows)
        first = next(rows, None)
        if first is None:
            echo_json([])
            return
        click.echo("[")
        for row in rows:
            click.echo(_indented(first) + ",")
            first = row
        click.echo(_indented(first) + "\n]")
        return
    for r in rows:
        best = ", ".join(f"{p['class']} {p['probability']:.3f}" for p in r["top"])
        click.echo(f"{r['image']}: {best}")


def _indented(row) -> str:
    import json

    return "\n".join("  " + line for line in json.dumps(row, indent=2, default=str).splitlines())
