"""Pictures with matplotlib (headless Agg backend); every PNG is written atomically."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from kerascnn import fsutil


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, out_png) -> Path:
    out_png = Path(out_png)
    with fsutil.atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    _plt().close(fig)
    return out_png


MAX_HISTORY_BYTES = 64 << 20  # a history.csv has one short row per epoch


def _read_history_csv(path: Path) -> list:
    """Rows of a history.csv; a binary, huge or malformed file is one DataError naming it."""
    from kerascnn.errors import DataError, first_line

    try:
        if not path.is_file():
            raise DataError(f"{path}: not a regular file; expected the run's history.csv")
        if path.stat().st_size > MAX_HISTORY_BYTES:
            raise DataError(f"{path}: {path.stat().st_size:,} bytes is too large for a history.csv")
        with open(path, newline="", encoding="utf-8") as fh:
            text = fh.read()
        if "\0" in text:
            raise ValueError("it contains NUL bytes")
        rows = list(csv.DictReader(text.splitlines()))
    except DataError:
        raise
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as e:
        reason = "binary, not UTF-8 text" if isinstance(e, UnicodeDecodeError) else first_line(e, 80, '')
        raise DataError(f"{path}: not a readable history.csv ({reason})") from None
    return rows


def read_history(history) -> dict:
    """dict of lists, list of row dicts, or a history.csv path -> dict of float lists."""
    if isinstance(history, (str, Path)):
        history = _read_history_csv(Path(history))
    if isinstance(history, list):
        keys = history[0].keys() if history else []
        history = {k: [r.get(k) for r in history] for k in keys}
    out = {}
    for k, vals in history.items():
        try:
            out[k] = [float(v) if v not in ("", None) else np.nan for v in vals]
        except (TypeError, ValueError):
            continue
    return out


def plot_curves(history, out_png, title: str | None = None) -> Path:
    """Loss and accuracy per epoch, training and validation."""
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    h = read_history(history)
    epochs = h.get("epoch") or list(range(1, len(h.get("loss", [])) + 1))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, label in ((axes[0], "loss", "Loss"), (axes[1], "accuracy", "Accuracy")):
        if key in h:
            ax.plot(epochs, h[key], "o-", label=f"train {key}")
        if f"val_{key}" in h and not np.all(np.isnan(h[f"val_{key}"])):
            ax.plot(epochs, h[f"val_{key}"], "s-", label=f"validation {key}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no epoch 1.5
        ax.set_ylabel(label.lower())
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save(fig, out_png)


def plot_confusion(matrix, class_names, out_png, title: str | None = None) -> Path:
    """Annotated confusion matrix (rows: true class, columns: predicted class)."""
    plt = _plt()
    m = np.asarray(matrix)
    n = len(m)
    size = max(5.0, min(16.0, 0.55 * n + 2.5))
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    im = ax.imshow(m, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    names = [str(c) for c in class_names]
    if n <= 40:
        ax.set_xticks(range(n), labels=names, rotation=45 if max(map(len, names)) > 3 else 0, ha="right")
        ax.set_yticks(range(n), labels=names)
        if n <= 20:
            thresh = m.max() / 2 if m.size else 0
            for i in range(n):
                for j in range(n):
                    ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if m[i, j] > thresh else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    acc = np.trace(m) / max(m.sum(), 1)
    ax.set_title(title or f"Confusion matrix (accuracy {acc:.2%}, {m.sum()} images)")
    fig.tight_layout()
    return save(fig, out_png)
