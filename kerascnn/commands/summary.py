"""`kerascnn list` and `kerascnn summary`: the zoo and the lecture arithmetic."""
from __future__ import annotations

import click

from kerascnn.commands.common import (classes_option, echo_json, format_option, input_shape_option,
                                      model_options)
from kerascnn.errors import ConfigError, GeometryError


def _entry_row(name):
    import dataclasses

    from kerascnn.registry import get_entry

    e = get_entry(name)
    params, trainable, macs = e.figures()   # a keras.applications model's: recorded (no TensorFlow here)
    return {
        "name": name, "family": e.family, "paper": e.paper, "year": e.year,
        "default_input": list(e.default_input), "num_classes": e.num_classes,
        "params": params, "trainable_params": trainable, "macs": macs, "source": e.source,
        **({"natural_inputs": {f"{k}={v}": list(shape) for (k, v), shape in e.cfg.natural_inputs}}
           if e.cfg.natural_inputs else {}),
        "options": e.options, "description": e.description,
        "published": [{k: dict(v) if k == "options" else v for k, v in dataclasses.asdict(pub).items()
                       if v not in (None, ())} for pub in e.published],
    }


@click.command("list", short_help="List the model zoo with params and MACs.")
@click.argument("pattern", default="*")
@format_option
def list_cmd(pattern, fmt):
    """List registered models matching PATTERN, with family, paper, year, default input,
    parameters and multiply-adds at that input, and who builds it (Source: kerascnn's spec
    list, or keras.applications' own constructor).

    PATTERN is a plain word, matched as a substring of the name or the family name
    (`kerascnn list resnet`, `kerascnn list lecture`; `kerascnn list keras` lists the
    keras.applications family), or a shell wildcard ('vgg1?_bn').
    """
    from kerascnn.analysis import human
    from kerascnn.registry import list_models
    from kerascnn.report import table

    names = list_models(pattern)
    if not names:
        raise ConfigError(f"no model matches {pattern!r}; run `kerascnn list` for the zoo")
    rows = [_entry_row(n) for n in names]
    if fmt == "json":
        echo_json(rows)
        return
    click.echo(table(
        ["Model", "Family", "Paper", "Year", "Input", "Classes", "Params", "MACs", "Source"],
        [[r["name"], r["family"], r["paper"], r["year"], "x".join(map(str, r["default_input"])),
          r["num_classes"], f"{r['params']:,}", human(r["macs"]), r["source"].rsplit(".", 1)[0]] for r in rows],
        "llllrrrrl"))


def _keras_counts(model) -> dict:
    from kerascnn.layers import flat_layers

    return {layer.name: layer.count_params() for layer in flat_layers(model)}


def _keras_summary_text(model) -> str:
    import os

    lines = []
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "110"  # rich crops captured tables to $COLUMNS (80 when not a terminal)
    try:
        model.summary(print_fn=lambda line, *a, **k: lines.append(line), line_length=104)
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old
    return "\n".join(lines).rstrip()


@click.command(short_help="Keras summary next to the lecture arithmetic (zoo, spec or .keras file).")
@click.argument("model_or_spec")
@input_shape_option
@classes_option
@model_options
@format_option
@click.option("--keras/--no-keras", "use_keras", default=None,
              help="Also build the Keras model and print model.summary() and Keras's per-layer counts (default for "
                   "zoo models and specs; --no-keras: pure arithmetic, instant). A .keras file is read from its "
                   "config.json without TensorFlow unless --keras is given.")
@click.option("--depth", type=click.IntRange(1, 3), default=2, show_default=True,
              help="Rows for layers inside blocks (Inception, residual): 1 = blocks only.")
@click.option("--strict", is_flag=True, help="Treat a geometry that doesn't fit ((W-F+2P)/S+1 not an integer, "
                                            "'same' included) as an error listing every such layer.")
@click.option("--weights", default=None, metavar="FILE|imagenet",
              help="Load pretrained weights into the Keras model and say which layers they filled "
                   "(docs/transfer-learning.md).")
def summary(model_or_spec, input_shape, num_classes, options, fmt, use_keras, depth, strict, weights):
    """Per-layer output shape, params, multiply-adds, receptive field, jump and activation
    memory for MODEL_OR_SPEC, beside Keras's own model.summary().

    MODEL_OR_SPEC is a registered model (`kerascnn list`), a layer spec such as
    "conv5-10s1p2" (with --input-shape 32,32,3), or a saved Keras model (.keras/.h5,
    Sequential or functional; --input-shape analyses it at another size, or gives the size
    its input leaves open); layers without a rule are listed with Keras's own parameter counts.

    \b
    Layer spec syntax (layers separated by commas, spaces or >):
      convF-K [sS pP|same|valid gG dD nb]  Conv2D FxF (or FxG), K filters (stride,
                                           pad, groups, dilation, no bias)
      maxpoolF avgpoolF [sS pP same]       pooling (stride defaults to F)
      gap gmp flatten                      global avg/max pooling, flatten
      fcN[nb] dropout0.5 bn relu ...       dense, dropout, BatchNorm, activation
      N*LAYER  N*(A,B,...)                 repeated layers or groups
    e.g. "3*conv3-64p1nb", or LeNet-5 at 32,32,1:
      "conv5-6, maxpool2, conv5-16, maxpool2, flatten, fc120, fc84, fc10"
    The whole vocabulary (depthwise, separable, blocks): docs/spec-language.md, "Spec language".
    """
    from kerascnn import analysis
    from kerascnn.registry import is_model, model_ref

    is_file = model_or_spec.endswith((".keras", ".h5"))
    if use_keras is None:  # the default: Keras's side for zoo models and specs; a file's config.json alone
        use_keras = not is_file
    if weights and not (is_model(model_or_spec) and use_keras):
        raise ConfigError("--weights applies to registered models with the Keras model (not --no-keras)")
    if is_file:
        return _summary_of_file(model_or_spec, input_shape, num_classes, options, fmt, use_keras, depth, strict)
    ref = model_ref(model_or_spec, options, input_shape, num_classes, spec=True)
    if ref.entry is not None and ref.entry.kind == "keras":
        return _summary_of_keras_entry(ref, fmt, use_keras, depth, strict, weights)
    if ref.is_spec and input_shape is None:
        raise click.UsageError("a layer spec needs --input-shape H,W,C (e.g. --input-shape 32,32,3)")
    if ref.is_spec and num_classes is not None:
        raise ConfigError("--classes applies to registered models; end a layer spec with fcN instead")
    report = ref.analyze()
    name, shape, opts, k = ref.name, ref.input_shape, ref.options, ref.num_classes
    if strict and report.warnings():
        w = report.warnings()
        raise GeometryError(f"--strict: {len(w)} layer(s) don't fit the lecture formula (floored): " + "; ".join(w))
    _guard_size(report)

    model = _build_or_explain(ref, report, depth, fmt) if use_keras else None
    loaded = None
    if weights:
        from kerascnn import pretrained as P

        wf = P.open_weights(weights, name, opts, shape, k)
        loaded = wf.load(model, name, opts).line(wf.path)
    counts = _keras_counts(model) if model is not None else None
    if fmt == "json":
        out = {"model": name, **report.to_dict()}
        out["input_shape"] = list(shape)
        if model is not None:
            import numpy as np

            trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
            total = int(model.count_params())
            out["keras"] = {
                "total_params": total, "trainable_params": trainable,
                "non_trainable_params": total - trainable,
                "layers_match": all(counts.get(l.name) == l.params for l in analysis.walk(report.layers)),
            }
        if loaded:
            out["weights"] = loaded
        echo_json(out)
        return
    from kerascnn.report import analysis_table, totals

    if model is not None:
        click.echo("Keras model.summary():")
        click.echo(_keras_summary_text(model))
        click.echo("")
    click.echo(f"Lecture arithmetic for {name} at {'x'.join(map(str, shape))}:")
    click.echo(analysis_table(report, counts, depth))
    click.echo("")
    click.echo(totals(report))
    if counts is not None:
        ok = all(counts.get(l.name) == l.params for l in analysis.walk(report.layers))
        click.echo(f"Keras count_params() agrees with the arithmetic on every layer: {'yes' if ok else 'NO'}")
    if loaded:
        click.echo(loaded)


def _summary_of_keras_entry(ref, fmt, use_keras, depth, strict, weights):
    """A model built by Keras's own constructor (the keras.applications family): it has no spec list, so
    its arithmetic is the Keras-model analysis of the built model (``kerascnn.analyze(model)``)."""
    from kerascnn.commands.common import load_tensorflow
    from kerascnn.keras_analysis import analyze_keras
    from kerascnn.report import render

    if not use_keras:
        raise ConfigError(f"{ref.name} is built by {ref.entry.source}: its arithmetic is read from the Keras "
                          f"model (drop --no-keras; `kerascnn list {ref.name}` shows its recorded figures)")
    ref.check()
    load_tensorflow()
    model = ref.build()
    loaded = None
    if weights:
        from kerascnn import pretrained as P

        wf = P.open_weights(weights, ref.name, ref.options, ref.input_shape, ref.num_classes)
        loaded = wf.load(model, ref.name, ref.options).line(wf.path)
    report = analyze_keras(model)
    if strict and report.warnings():
        raise GeometryError(f"--strict: {report.warnings()[0]}")
    if fmt == "json":
        out = {**report.to_dict(), "model": ref.name, "source": ref.entry.source}
        if loaded:
            out["weights"] = loaded
        echo_json(out)
        return
    click.echo("Keras model.summary():")
    click.echo(_keras_summary_text(model))
    click.echo("")
    shape = "x".join(map(str, ref.input_shape))
    click.echo(render(report, report.keras_counts, depth,
                      title=f"Lecture arithmetic for {ref.name} ({ref.entry.source}) at {shape}"))
    which = f"analysed layer ({len(report.unknown)} not analysed)" if report.unknown else "layer"
    click.echo(f"Keras count_params() agrees with the arithmetic on every {which}: "
               f"{'yes' if report.keras_agrees else 'NO'}")
    if loaded:
        click.echo(loaded)


def _build_or_explain(ref, report, depth, fmt):
    """The Keras model of a zoo model or spec; when Keras cannot build it (a convolution with stride > 1
    and dilation > 1), the arithmetic is printed first, then the one-line reason."""
    from kerascnn.commands.common import load_tensorflow

    load_tensorflow()
    try:
        return ref.build()
    except GeometryError:
        raise
    except ConfigError:
        if fmt != "json":
            from kerascnn.report import render

            click.echo(render(report, None, depth, title=f"Lecture arithmetic for {ref.name}"))
            click.echo("")
        raise


def _summary_of_file(path, input_shape, num_classes, options, fmt, use_keras, depth, strict):
    """`kerascnn summary model.keras`: any Keras model, mapped layer by layer to the rules; a .keras
    file is read from its config.json (no TensorFlow, no weights) unless --keras asks for Keras."""
    from kerascnn.keras_analysis import analyze_file, analyze_keras, load_keras_model
    from kerascnn.report import render

    if num_classes is not None or options:
        raise ConfigError("--classes and -o apply to registered models and specs; a .keras file has its own")
    if path.endswith(".h5"):  # the legacy format has no config.json: Keras reads it
        if input_shape is not None:
            raise ConfigError("--input-shape applies to .keras files (and zoo models, specs), not legacy .h5")
        from kerascnn.commands.common import load_tensorflow

        load_tensorflow()
        model = load_keras_model(path)
        report = analyze_keras(model)
    else:
        report, model = analyze_file(path, input_shape, use_keras)
    if strict and report.warnings():
        raise GeometryError(f"--strict: {report.warnings()[0]}")
    if fmt == "json":
        echo_json(report.to_dict())
        return
    if use_keras:
        click.echo("Keras model.summary():")
        click.echo(_keras_summary_text(model))
        click.echo("")
    click.echo(render(report, report.keras_counts, depth, title=f"Lecture arithmetic for {report.name}"))
    if report.keras_counts is not None:
        which = f"analysed layer ({len(report.unknown)} not analysed)" if report.unknown else "layer"
        click.echo(f"Keras count_params() agrees with the arithmetic on every {which}: "
                   f"{'yes' if report.keras_agrees else 'NO'}")


def _guard_size(report, limit_bytes: float = 16 * 2**30):
    """Refuse to build a model whose parameters alone would not fit in memory."""
    from kerascnn.analysis import human_bytes
    from kerascnn.errors import MemoryGuardError

    if report.param_bytes > limit_bytes:
        raise MemoryGuardError(f"the model has {report.total_params:,} parameters "
                               f"({human_bytes(report.param_bytes)} as float32), more than the "
                               f"{human_bytes(limit_bytes)} kerascnn will allocate; use --no-keras for the arithmetic")
