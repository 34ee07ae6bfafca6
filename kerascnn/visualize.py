"""Pictures of what a network learned: filters, activation maps, mistakes, curves, confusion,
receptive fields, a Sobel edge detector, and the architecture diagram. Headless (Agg)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from kerascnn import data as D
from kerascnn.errors import ConfigError, DataError
from kerascnn.plots import _plt, plot_confusion, plot_curves, save

SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float32)
# the lecture's Gy (lecture 000, "Reference: Sobel Edge Detector"): positive above, negative below.
# It is -Gx^T, not Gx^T: with Gx^T a bright-above/dark-below edge would come out negative.
SOBEL_Y = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float32)


# --------------------------------------------------------------------------- helpers
def _conv_layer(model, name: str | None):
    import keras

    from kerascnn.layers import flat_layers

    layers = flat_layers(model)
    if name:
        for layer in layers:
            if layer.name == name:
                if not isinstance(layer, keras.layers.Conv2D):
                    raise ConfigError(f"--layer {name} is a {type(layer).__name__}, not a Conv2D")
                return layer
        convs = [l.name for l in layers if isinstance(l, keras.layers.Conv2D)]
        raise ConfigError(f"no layer {name!r}; convolutions: {', '.join(convs[:12])}")
    for layer in layers:
        if isinstance(layer, keras.layers.Conv2D):
            return layer
    raise ConfigError("the model has no Conv2D layer")


def _normalise(a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def _grid(n: int, max_cols: int = 8) -> tuple:
    cols = min(max_cols, max(1, n))
    return math.ceil(n / cols), cols


def _data_for(record, dataset, data_path):
    """The data set a model's test images come from: as given, else its run's (``record``)."""
    cfg = record.config
    if dataset is None and data_path is None:
        data_path = cfg.data
        dataset = cfg.dataset if not data_path else None
    return D.load_data(dataset or (None if data_path else "digits"), data_path, seed=cfg.seed)


def _input_image(model, info, image, index, dataset, data_path):
    """(model-ready float32 batch of one, display image, label text)."""
    h, w, c = (int(v) for v in model.input_shape[1:])
    if image:
        x, files = D.load_image_files([image], (h, w), c, 1 / 255)
        return x, x[0], Path(files[0]).name
    d = _data_for(info, dataset, data_path)
    if not 0 <= index < len(d.x_test):
        raise ConfigError(f"--index {index} is outside the {len(d.x_test)} test images of {d.name}")
    x = D.prepare_images(d.x_test[index:index + 1], (h, w), c, d.pixel_scale)
    return x, x[0], f"{_data_label(d)} test #{index} (class {d.class_names[d.y_test[index]]})"


def _show(ax, img, title=None, cmap="gray", **imshow_kw):
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    ax.imshow(img, cmap=None if img.ndim == 3 else cmap, **imshow_kw)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def _signed(ax, img, title=None, limit=None):
    """Signed values on a diverging map: white 0, red positive, blue negative, symmetric range."""
    img = np.asarray(img, dtype=np.float32)
    m = float(limit if limit is not None else np.abs(img).max()) or 1.0
    _show(ax, img, title, cmap="RdBu_r", vmin=-m, vmax=m)


def _data_label(d) -> str:
    """'mnist.npz' for a file data set (not 'file:../path/mnist.npz'), else the data set's name."""
    return Path(d.name[5:]).name if d.name.startswith("file:") else d.name


# --------------------------------------------------------------------------- kinds
def filters(model, out, layer=None, max_filters=64, max_rows=16):
    plt = _plt()
    conv = _conv_layer(model, layer)
    kernel = np.asarray(conv.get_weights()[0])  # (kh, kw, cin, cout)
    kh, kw, cin, cout = kernel.shape
    if cin in (1, 3):  # one picture per filter, in a grid
        n = min(cout, max_filters)
        rows, cols = _grid(n)
        fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols + 1, 1.3 * rows + 1.2), squeeze=False,
                                 layout="constrained")
        for i, ax in enumerate(axes.flat):
            if i >= n:
                ax.axis("off")
            elif cin == 3:
                _show(ax, _normalise(kernel[..., i]), f"#{i}")
            else:
                _signed(ax, kernel[:, :, 0, i], f"#{i}")
        detail = ("RGB kernels, each normalised to its own range" if cin == 3 else
                  "red positive, blue negative, white 0; each filter scaled to its own largest |weight|")
    else:  # one row per filter, one column per input channel
        n = min(cout, max_rows)
        shown_c = min(cin, 8)
        fig, axes = plt.subplots(n, shown_c, figsize=(1.1 * shown_c + 1, 1.1 * n + 1.2), squeeze=False,
                                 layout="constrained")
        for i in range(n):
            k = kernel[..., i]
            for j in range(shown_c):
                _signed(axes[i, j], k[:, :, j], f"in ch {j}" if i == 0 else None, limit=np.abs(k).max())
            axes[i, 0].set_ylabel(f"filter {i}", fontsize=8)
        detail = (f"one row per filter, one column per input channel (first {shown_c} of {cin});\n"
                  "red positive, blue negative, white 0; each filter scaled to its own largest |weight|")
    shown = f" (first {n} shown)" if n < cout else ""
    fig.suptitle(f"{conv.name}: {cout} filters of {kh}x{kw}x{cin}{shown}\n{detail}", fontsize=11)
    return save(fig, out)


def activations(model, out, x, shown, label, max_maps=16, max_layers=10):
    import keras

    plt = _plt()
    wanted = [l for l in model.layers if isinstance(l, (keras.layers.Conv2D, keras.layers.MaxPooling2D,
                                                        keras.layers.AveragePooling2D))
              or type(l).__name__ in ("InceptionBlock", "ResidualBlock")][:max_layers]
    if not wanted:
        raise ConfigError("the model has no convolution or pooling layer to show")
    probe = keras.Model(model.inputs[0], [l.output for l in wanted])
    maps = probe(x, training=False)
    maps = maps if isinstance(maps, (list, tuple)) else [maps]
    cols = max_maps + 1
    fig, axes = plt.subplots(len(wanted), cols, figsize=(1.15 * cols, 1.35 * len(wanted) + 1), squeeze=False)
    for r, (layer, m) in enumerate(zip(wanted, maps)):
        m = np.asarray(m)[0]
        if r == 0:
            _show(axes[r, 0], shown, "input")
        else:
            axes[r, 0].axis("off")
        for j in range(1, cols):
            ax = axes[r, j]
            if j - 1 < m.shape[-1]:
                _show(ax, m[:, :, j - 1], cmap="viridis")
            else:
                ax.axis("off")
        axes[r, 1].set_title(f"{layer.name} ({'x'.join(map(str, m.shape))})", fontsize=9, loc="left")
    fig.suptitle(f"Activation maps for {label}: the first {max_maps} channels of each layer\n"
                 "(each map on its own colour scale, dark = its lowest value)", fontsize=11)
    fig.tight_layout()
    return save(fig, out)


def mistakes(model, info, out, dataset=None, data_path=None, max_images=25):
    from kerascnn.evaluation import predict_probabilities

    plt = _plt()
    d = _data_for(info, dataset, data_path)
    h, w, c = (int(v) for v in model.input_shape[1:])
    x = D.prepare_images(d.x_test, (h, w), c, d.pixel_scale)
    probs = predict_probabilities(model, x)
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != d.y_test)
    names = info.class_names if info and len(info.class_names) == probs.shape[1] else d.class_names
    n = min(max_images, len(wrong))
    if n == 0:
        raise DataError(f"no misclassified images in the {len(x)} test images of {d.name}")
    order = wrong[np.argsort(-probs[wrong, pred[wrong]])][:n]  # the most confident mistakes first
    rows, cols = _grid(n, 5)
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 2.5 * rows + 0.8), squeeze=False,
                             layout="constrained")
    for ax, i in zip(axes.flat, order):
        _show(ax, x[i], f"true {names[d.y_test[i]]}\npred {names[pred[i]]} ({probs[i, pred[i]]:.2f})")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(f"{len(wrong)} of {len(x)} test images misclassified ({len(wrong) / len(x):.1%}); "
                 f"the {n} most confident mistakes", fontsize=11)
    return save(fig, out)


def curves(info, out):
    if not info or not info.run_dir or not (info.run_dir / "history.csv").is_file():
        raise ConfigError("curves needs a run directory with history.csv (written by kerascnn train)")
    return plot_curves(info.run_dir / "history.csv", out, title=f"{info.model_name}: {info.run_dir.name}")


def confusion(model, info, out, dataset=None, data_path=None):
    if info and info.run_dir and dataset is None and data_path is None:
        found = sorted(info.run_dir.glob("eval-*-test/confusion.json"))
        if found:
            cm = json.loads(found[0].read_text())
            return plot_confusion(cm["matrix"], cm["class_names"], out)
    from kerascnn.evaluation import metrics_from_probabilities, predict_probabilities

    d = _data_for(info, dataset, data_path)
    h, w, c = (int(v) for v in model.input_shape[1:])
    probs = predict_probabilities(model, D.prepare_images(d.x_test, (h, w), c, d.pixel_scale))
    names = info.class_names if info and len(info.class_names) == probs.shape[1] else d.class_names
    m = metrics_from_probabilities(probs, d.y_test, names)
    return plot_confusion(m["confusion_matrix"], names, out)


def _geometry_to(specs, input_size: int, layer_name, sizes=None):
    """(receptive field, jump, start) along H up to ``layer_name``, from each layer's rule
    (``kerascnn.rules``); start = input coordinate of the centre of output unit 0's field (the
    built layers pad P on every side, so "same" shifts nothing). ``input_size`` and ``sizes``
    (layer name -> output size) give the grid a Flatten/global pool sees."""
    from kerascnn import specs as S
    from kerascnn.rules import rule_for

    rf, jump, start, size = (1, 1), (1, 1), (0.0, 0.0), input_size
    for spec in specs:
        if isinstance(spec, (S.Flatten, S.GlobalPool, S.Dense)):
            break
        rf, jump, start = rule_for(spec).field(rf, jump, start, in_shape=(size, size, 1))
        if spec.name == layer_name:
            break
        if sizes and spec.name in sizes:
            size = sizes[spec.name]
    return rf[0], jump[0], start[0]


def receptive_field(model, info, out, layer, x, shown, label):
    from kerascnn.registry import is_model, model_ref

    plt = _plt()
    name = info.config.model or model.name
    if not is_model(name):
        raise ConfigError("receptive-field needs a kerascnn model (a run directory or a registered name)")
    ref = model_ref(name, dict(info.config.model_options),
                  tuple(int(v) for v in model.input_shape[1:]), int(model.output_shape[-1]))
    shape, specs, report = ref.input_shape, ref.specs(), ref.analyze()
    names = [s.name for s in specs]
    if layer is None:
        layer = [r for r in report.layers if len(r.output_shape) == 3][-1].name
    elif layer not in names:
        raise ConfigError(f"no layer {layer!r}; layers: {', '.join(names[:15])}")
    rows = {r.name: r for r in report.layers}
    sizes = {n: r.output_shape[0] for n, r in rows.items() if len(r.output_shape) == 3}
    rf, jump, start = _geometry_to(specs, shape[0], layer, sizes)
    out_shape = rows[layer].output_shape if len(rows[layer].output_shape) == 3 else None
    if rows[layer].receptive_field != rf:  # the analysis module is the reference for the size
        rf = rows[layer].receptive_field
    i = (out_shape[0] - 1) // 2 if out_shape else 0
    centre = start + i * jump
    fig, ax = plt.subplots(figsize=(6.4, 6.8))
    _show(ax, shown)
    from matplotlib.patches import Rectangle

    lo = centre - (rf - 1) / 2 - 0.5
    ax.add_patch(Rectangle((lo, lo), rf, rf, fill=False, edgecolor="red", linewidth=2.5))
    ax.plot([centre], [centre], "r+", markersize=14, mew=2)
    ax.set_xlim(min(-0.5, lo - 1), max(shape[1] - 0.5, lo + rf + 1))
    ax.set_ylim(max(shape[0] - 0.5, lo + rf + 1), min(-0.5, lo - 1))
    ax.set_title(f"{label}\n{layer}: the centre unit ({i},{i}) of its "
                 f"{'x'.join(map(str, out_shape or ()))} output sees {rf}x{rf} input pixels (jump {jump})",
                 fontsize=10)
    fig.tight_layout()
    return save(fig, out)


def sobel(x):
    """Gx and Gy responses (last axis) of a batch of one-channel images ``x`` (N, H, W, 1), computed
    by a ``keras.layers.Conv2D`` holding the lecture's Sobel pair ('valid' padding: zero padding
    would draw a false edge along every bright image border)."""
    import keras

    x = np.asarray(x, dtype=np.float32)
    conv = keras.layers.Conv2D(2, 3, padding="valid", use_bias=False)
    conv.build((None,) + x.shape[1:])
    conv.set_weights([np.stack([SOBEL_X, SOBEL_Y], axis=-1)[:, :, None, :]])
    return np.asarray(conv(x))


def edges(out, image=None, index=0, dataset=None, data_path=None):
    plt = _plt()
    if image:
        x, _ = D.load_image_files([image], _image_size(image), 1, 1 / 255)
        title = Path(image).name
    else:
        d = D.load_data(dataset or (None if data_path else "digits"), data_path)
        if not 0 <= index < len(d.x_test):
            raise ConfigError(f"--index {index} is outside the {len(d.x_test)} test images of {d.name}")
        h, w = d.x_test.shape[1:3]
        size = (h, w) if min(h, w) >= 16 else (64, 64)  # the 8x8 digits are enlarged
        x = D.prepare_images(d.x_test[index:index + 1], size, 1, d.pixel_scale)
        title = f"{_data_label(d)} test #{index}"
    g = sobel(x)[0]
    mag = np.sqrt(g[..., 0] ** 2 + g[..., 1] ** 2)
    fig, axes = plt.subplots(1, 4, figsize=(15, 4.6), layout="constrained")
    _show(axes[0], x[0], f"input: {title}")
    lim = float(np.abs(g).max())  # one symmetric scale for Gx and Gy: white is 0
    _signed(axes[1], g[..., 0], "Gx = Sobel [[-1,0,1],[-2,0,2],[-1,0,1]]\n(vertical edges)", limit=lim)
    _signed(axes[2], g[..., 1], "Gy = Sobel [[+1,+2,+1],[0,0,0],[-1,-2,-1]]\n(horizontal edges)", limit=lim)
    _show(axes[3], mag, "edge strength sqrt(Gx² + Gy²)", cmap="magma")
    fig.suptitle("A fixed 3x3 Sobel filter pair applied by keras.layers.Conv2D "
                 "(padding 'valid'; red positive, blue negative)", fontsize=11)
    return save(fig, out)


def _image_size(path):
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
    except Exception:
        raise DataError(f"{path}: not a readable image") from None
    scale = min(1.0, 512 / max(w, h))
    return (max(8, int(h * scale)), max(8, int(w * scale)))


def check_architecture_tools() -> None:
    """pydot and Graphviz's `dot` (checked before any model is loaded)."""
    import importlib.util
    import shutil

    if importlib.util.find_spec("pydot") is None or shutil.which("dot") is None:
        raise ConfigError("architecture diagrams need pydot and Graphviz: pip install pydot; "
                          "apt-get install graphviz (or brew install graphviz)")


def architecture(model, out):
    check_architecture_tools()
    import keras

    from kerascnn import fsutil

    out = Path(out)
    with fsutil.atomic_path(out) as tmp:
        keras.utils.plot_model(model, to_file=str(tmp), show_shapes=True, show_layer_names=True, dpi=80)
    return out
