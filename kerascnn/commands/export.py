"""`kerascnn export`."""
from __future__ import annotations

import functools

import click

from kerascnn.commands.common import echo_json, pretrained_options


@click.command(short_help="Export a verified SavedModel (or ONNX / LiteRT).")
@click.argument("model_or_run")
@click.option("--out", type=click.Path(), default=None, help="Target (default saved_models/NAME).")
@click.option("--force", is_flag=True, help="Replace an existing export (only after the new one verified).")
@click.option("--to", "export_format", type=click.Choice(["savedmodel", "onnx", "litert"]), default=None,
              help="What to write: savedmodel (default), onnx or litert (these need their extras). SavedModel "
                   "and ONNX take `images` as uint8 pixels 0..255 and scale inside; LiteRT takes float32 "
                   "pixels already divided by 255.")
@click.option("--which", type=click.Choice(["best", "last"]), default="best", show_default=True,
              help="For a run directory: the best or the last model.")
@click.option("--fuse-bn", is_flag=True, help="Fold BatchNorm into the preceding conv/dense layer first.")
@click.option("--unsafe", is_flag=True, help="Allow loading models that contain code (Lambda layers).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "savedmodel", "onnx", "litert"]),
              default="table", metavar="[table|json]", show_default=True,
              help="Output format (like every command; the older `--format onnx|litert` still means --to).")
@click.option("--json", "as_json", is_flag=True, hidden=True, help="Deprecated: --format json.")
@functools.partial(pretrained_options, preprocessing_help="With --weights: the input preprocessing, inside "
                  "the export (default: the weights' own).")
def export(model_or_run, out, force, export_format, which, fuse_bn, unsafe, fmt, as_json, weights, preprocessing,
           options):
    """Export MODEL_OR_RUN so that plain TensorFlow (no kerascnn) can serve it.

    The SavedModel's serving_default signature takes `images` (uint8, N x H x W x C at
    the trained size) and returns `probabilities`; it is reloaded and checked against
    the Keras model before it is renamed into place.
    """
    from kerascnn import api
    from kerascnn.errors import ConfigError

    if fmt in ("savedmodel", "onnx", "litert"):  # the pre-0.x spelling of --to
        if export_format not in (None, fmt):
            raise ConfigError(f"--to {export_format} and --format {fmt} disagree; use --to")
        export_format, fmt = fmt, "table"
    as_json = as_json or fmt == "json"
    r = api.export(model_or_run, out=out, force=force, to=export_format or "savedmodel", which=which,
                   fuse_bn=fuse_bn, unsafe=unsafe, weights=weights, preprocessing=preprocessing,
                   model_options=options).as_dict()
    if as_json:
        echo_json(r)
        return
    click.echo(f"exported {r['path']} ({r['format']})")
    if "signature" in r:
        click.echo(f"  signature: {r['signature']}")
        click.echo(f"  verified: reloaded with tf.saved_model.load, max |diff| vs Keras {r['max_abs_diff']:.2g} "
                   f"(tolerance {r['tolerance']:g})")
        click.echo(f"  inspect:  saved_model_cli show --all --dir {r['path']}")
    else:
        click.echo(f"  verified: reloaded, max |diff| vs Keras {r['max_abs_diff']:.2g}; {r['note']}")
    if "preprocessing" in r:
        from kerascnn.pretrained.transforms import EvalTransform

        p = r["preprocessing"]
        outside = EvalTransform.from_dict(p["outside_graph"]) if p["outside_graph"] else None
        click.echo(f"  preprocessing ({p['origin']}): in the graph: {p['in_graph']}")
        recorded = " (PIL; kerascnn.json records it, `kerascnn predict` applies it)" if r["format"] == "savedmodel" \
            else " (PIL; do it before calling the model)"
        click.echo("  not in the graph: " + (f"{outside.describe()}{recorded}" if outside else
                                              "the whole image resized to the input size (kerascnn's own)"))
    if "warning" in r:
        click.echo(f"warning: {r['warning']}", err=True)
    if "trained_precision" in r:
        click.echo(f"  precision: trained in {r['trained_precision']}, exported in float32 "
                   f"(max |diff| vs the {r['trained_precision']} model {r['precision_diff']:.2g}, same classes)")
    if "fused_bn_relative_diff" in r:
        click.echo(f"  BatchNorm folded: {r['fused_bn_layers_removed']} layers removed, "
                   f"max relative diff {r['fused_bn_relative_diff']:.2g}")
