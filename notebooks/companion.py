"""Helpers shared by the lecture companion notebooks (plain Python; the numbers come from kerascnn).

* ``check(what, got, expected)``: assert that kerascnn's number equals the lecture's (or the one
  derived from the lecture's formula) and count it; ``done()`` prints the count at the end.
* ``erratum(...)``: a place where the lecture is wrong, shown with the correct value and why.
* ``values(spec, grid, kernel=...)``: the output a layer computes on a small input
  (``kerascnn values`` from Python), as a NumPy array.
* ``table(report)``, ``cli("summary ...")``: a report or a command's output, as the CLI prints it.
* ``draw(report)``: the network as a row of volumes, one box per layer, sized by its output.
"""
from __future__ import annotations

import shlex
import tempfile
from pathlib import Path

import numpy as np

from kerascnn.tfquiet import import_tensorflow_if_installed

import_tensorflow_if_installed()   # once, without TensorFlow's start-up lines in the notebook

CHECKS: list = []
ERRATA: list = []
WORK = Path(tempfile.mkdtemp(prefix="kerascnn-notebook-"))   # pictures and runs go here, not into the repo


def check(what: str, got, expected, tol: float = 0.0) -> None:
    """Assert ``got == expected`` (arrays: element by element; within ``tol`` for computed floats)
    and print one line."""
    if tol or isinstance(got, np.ndarray) or isinstance(expected, np.ndarray):
        g, e = np.asarray(got), np.asarray(expected)
        same = g.shape == e.shape and bool(np.all(np.abs(g - e) <= tol) if tol else np.all(g == e))
    else:   # numbers, shapes, lists of shapes: exact
        same = bool(got == expected)
    assert same, f"{what}: kerascnn gives {got!r}, the lecture says {expected!r}"
    CHECKS.append(what)
    print(f"ok  {what}: {_shown(got)}")


def _shown(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, np.ndarray) and v.size > 24:
        return f"{v.shape} array, equal element by element"
    if isinstance(v, np.ndarray) and v.ndim:
        whole = v.dtype.kind in "iu" or bool(np.all(v == np.round(v)))
        return np.array2string(v.astype(np.int64) if whole else v, separator=", ").replace("\n", "")
    if isinstance(v, (int, float, np.integer, np.floating)):
        v = v.item() if hasattr(v, "item") else v
        if float(v).is_integer():
            return f"{int(v):,}" if abs(v) >= 10_000 else str(int(v))
        return f"{v:g}"
    return repr(v)


def erratum(where: str, lecture: str, correct: str, why: str) -> None:
    """Show (as Markdown) where the lecture is wrong, with the correct value and why."""
    ERRATA.append(where)
    text = f"**Correction ({where}).** The lecture has {lecture}; correct: {correct}. {why[:1].upper()}{why[1:]}"
    try:
        from IPython.display import Markdown, display

        display(Markdown(text))
    except ImportError:   # outside Jupyter
        print(text)


def done() -> None:
    errors = f"{len(ERRATA)} lecture error{'s' if len(ERRATA) != 1 else ''} shown"
    print(f"{len(CHECKS)} numbers checked against kerascnn; {errors}.")


def values(spec: str, grid, kernel=None, bias=None) -> np.ndarray:
    """The output of ``spec`` on ``grid`` (text as in ``kerascnn values --input`` or an array);
    kernels all ones and biases zero unless given. One channel comes back as an (H, W) array."""
    from kerascnn import values as V

    x = V.parse_input(grid) if isinstance(grid, str) else np.asarray(grid, np.float32)
    if x.ndim == 2:
        x = x[..., None]
    k = V.parse_kernel(kernel) if isinstance(kernel, str) else kernel
    b = V.parse_bias(bias) if isinstance(bias, str) else bias
    outputs, _ = V.run_values(spec, x, kernel=k, bias=b)
    y = outputs[-1][2]
    return y[..., 0] if y.ndim == 3 and y.shape[-1] == 1 else y


def table(report) -> None:
    """Print the lecture-arithmetic table of a report, as ``kerascnn summary --no-keras`` does."""
    from kerascnn.report import render

    print(report if hasattr(report, "keras_counts") else render(report, depth=2))


def show(obj) -> None:
    """Display a report (as HTML where kerascnn provides it) or print its table."""
    if hasattr(obj, "_repr_html_"):
        from IPython.display import display

        display(obj)
    else:
        table(obj)


def cli(command: str) -> str:
    """Run a ``kerascnn`` command in this process, print and return its output (and exit code)."""
    from click.testing import CliRunner

    from kerascnn.cli import cli as group

    args = shlex.split(command)
    r = CliRunner().invoke(group, args[1:] if args[0] == "kerascnn" else args, prog_name="kerascnn")
    print(r.output, end="" if r.output.endswith("\n") else "\n")
    if r.exit_code:
        print(f"(exit {r.exit_code})")
    return r.output


def picture(command: str, name: str):
    """Run ``kerascnn visualize ...`` into a PNG in the scratch folder and show it."""
    from IPython.display import Image

    out = WORK / name
    cli(f"{command} --out {out}")
    return Image(filename=str(out))


# ------------------------------------------------------------------------------------ drawing
COLOURS = {"Conv2D": "#4C78A8", "DepthwiseConv2D": "#4C78A8", "SeparableConv2D": "#4C78A8",
           "MaxPooling2D": "#F58518", "AveragePooling2D": "#F58518", "Dense": "#54A24B",
           "BranchBlock": "#B279A2", "InceptionBlock": "#B279A2", "ResidualBlock": "#B279A2"}
HIDDEN = {"Activation", "Dropout", "SpatialDropout2D", "BatchNormalization", "ZeroPadding2D",
          "NegInfPadding2D", "LayerNormalization", "GroupNormalization"}


def draw(report, title: str = "", max_boxes: int = 40):
    """The layers of ``report`` (a ``kerascnn.analyze`` result) as boxes from input to output:
    height grows with the spatial size, width with the channels, vectors as thin bars."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    rows = [("input", "Input", tuple(report.input_shape))]
    rows += [(l.name, l.cls, tuple(l.output_shape)) for l in report.layers if l.cls not in HIDDEN]
    rows = rows[:max_boxes]
    sizes = [s[0] for _, _, s in rows if len(s) == 3] or [1]
    chans = [s[-1] for _, _, s in rows]
    top_h, top_c = max(sizes), max(chans)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.95 * len(rows)), 3.6))
    x = 0.0
    for name, cls, shape in rows:
        if len(shape) == 3:
            h = 0.5 + 2.5 * np.sqrt(shape[0] / top_h)
            w = 0.15 + 0.6 * np.log2(shape[-1] + 1) / np.log2(top_c + 1)
            label = "x".join(map(str, shape))
        else:
            h, w, label = 0.4 + 2.6 * np.log10(shape[0] + 1) / np.log10(top_c + 1), 0.12, str(shape[0])
        ax.add_patch(Rectangle((x, -h / 2), w, h, facecolor=COLOURS.get(cls, "#BAB0AC"), edgecolor="black", lw=0.6))
        ax.text(x + w / 2, -1.75, f"{name}\n{label}", ha="center", va="top", fontsize=7, rotation=0)
        x += w + 0.75
    ax.set_xlim(-0.3, x - 0.4)
    ax.set_ylim(-2.6, 1.8)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    show_figure(fig)


def show_figure(fig) -> None:
    """Show a matplotlib figure inline as a PNG, whatever backend is active (kerascnn's pictures use
    the headless Agg backend), and close it."""
    import io

    import matplotlib.pyplot as plt
    from IPython.display import Image, display

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    display(Image(data=buf.getvalue()))
