"""What the Python API returns (``kerascnn.api``): ``Run``, ``Evaluation``, ``Predictions`` and
``Export``. Each reads like the command's output: a readable ``repr`` and, in Jupyter, an HTML
table (``_repr_html_``) with the training curves or the confusion matrix inline as a PNG. They
hold the same values the CLI prints or writes (``as_dict()`` is the command's ``--format json``).
"""
from __future__ import annotations

import base64
import html
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np


# --------------------------------------------------------------------------- HTML pieces
def _table(headers: list, rows: list, caption: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(c))}</td>" for c in row) + "</tr>" for row in rows)
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _png(draw) -> str:
    """``<img>`` of the PNG ``draw(path)`` writes ('' where matplotlib is missing)."""
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "figure.png"
            draw(path)
            data = base64.b64encode(path.read_bytes()).decode("ascii")
    except ImportError:
        return ""
    return f'<img src="data:image/png;base64,{data}" style="max-width:640px"/>'


# --------------------------------------------------------------------------- a run
@dataclass(frozen=True)
class Epoch:
    """One row of a run's history (history.csv): training and validation metrics of an epoch."""
    epoch: int
    loss: float
    accuracy: float
    val_loss: Optional[float] = None
    val_accuracy: Optional[float] = None
    lr: Optional[float] = None
    seconds: Optional[float] = None

    @classmethod
    def from_row(cls, row: dict) -> "Epoch":
        def num(key):
            value = row.get(key)
            return None if value in (None, "") else float(value)

        return cls(int(float(row["epoch"])), num("loss"), num("accuracy"), num("val_loss"), num("val_accuracy"),
                   num("lr"), num("seconds"))


@dataclass
class Run:
    """A training run: its directory, its ``RunRecord`` (``record.config`` is the ``TrainConfig``),
    its history (one ``Epoch`` per completed epoch) and its final metrics (metrics.json)."""
    dir: Optional[Path]
    record: object
    history: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    note: Optional[str] = None          # set when nothing was trained (a complete run resumed)

    @property
    def config(self):
        return self.record.config

    @property
    def final(self) -> Optional[Epoch]:
        return self.history[-1] if self.history else None

    @property
    def best_epoch(self) -> Optional[int]:
        return self.metrics.get("best_epoch")

    @property
    def weights_sha256(self) -> Optional[str]:
        return self.metrics.get("weights_sha256")

    def _summary(self) -> str:
        f = self.final
        if f is None:
            return "no epoch completed"
        score = f"val_accuracy {f.val_accuracy:.4f}" if f.val_accuracy is not None else f"accuracy {f.accuracy:.4f}"
        best = f", best epoch {self.best_epoch}" if self.best_epoch else ""
        return f"{len(self.history)} epoch(s), {score}{best}"

    def __repr__(self) -> str:
        return f"Run({self.dir}: {self.record.model_name}, {self._summary()})"

    def _repr_html_(self) -> str:
        c = self.record.config
        data = c.data or c.dataset
        about = [["model", c.model], ["data", data], ["epochs", c.epochs], ["batch size", c.batch_size],
                 ["optimizer", f"{c.optimizer}, lr {c.lr:g}, {c.schedule}"], ["seed", c.seed],
                 ["engine", c.backend or self.record.resolved.get("engine")], ["directory", self.dir],
                 ["weights sha256", self.weights_sha256]]
        rows = [[e.epoch, e.loss, e.accuracy, e.val_loss, e.val_accuracy, e.lr, e.seconds] for e in self.history]
        out = _table(["", ""], about, f"Run {self.dir}: {self._summary()}")
        out += _table(["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"], rows, "History")
        if self.history:
            from kerascnn.plots import plot_curves

            out += _png(lambda p: plot_curves([e.__dict__ for e in self.history], p))
        return out


# --------------------------------------------------------------------------- scores
@dataclass
class Evaluation:
    """``kerascnn evaluate``'s result: loss, top-1/top-k accuracy, per-class precision/recall/F1,
    the confusion matrix (rows: true class), and where they were written."""
    result: dict

    loss = property(lambda self: self.result["loss"])
    accuracy = property(lambda self: self.result["accuracy"])
    macro_f1 = property(lambda self: self.result["macro_f1"])
    per_class = property(lambda self: self.result["per_class"])
    class_names = property(lambda self: self.result["class_names"])
    images = property(lambda self: self.result["images"])
    out_dir = property(lambda self: Path(self.result["out_dir"]))

    @property
    def top_k(self) -> dict:
        """{3: top-3 accuracy, 5: top-5 accuracy} where the model has more classes than k."""
        return {k: self.result[f"top{k}_accuracy"] for k in (3, 5) if f"top{k}_accuracy" in self.result}

    @property
    def confusion(self) -> np.ndarray:
        return np.asarray(self.result["confusion_matrix"])

    def as_dict(self) -> dict:
        return dict(self.result)

    def __repr__(self) -> str:
        r = self.result
        tops = "".join(f", top-{k} {v:.4f}" for k, v in self.top_k.items())
        return (f"Evaluation({r['model']} on {r['data']} ({r['split']}, {r['images']} images): accuracy "
                f"{r['accuracy']:.4f}{tops}, loss {r['loss']:.4f}, macro F1 {r['macro_f1']:.4f})")

    def _repr_html_(self) -> str:
        r = self.result
        head = [["loss", r["loss"]], ["accuracy", r["accuracy"]]] + [[f"top-{k}", v] for k, v in self.top_k.items()]
        head += [["macro F1", r["macro_f1"]], ["images", r["images"]]]
        out = _table(["", ""], head, f"{r['model']} on {r['data']} ({r['split']})")
        out += _table(["class", "precision", "recall", "F1", "support"],
                      [[c["class"], c["precision"], c["recall"], c["f1"], c["support"]] for c in r["per_class"]],
                      "Per class")
        from kerascnn.plots import plot_confusion

        return out + _png(lambda p: plot_confusion(r["confusion_matrix"], r["class_names"], p))


@dataclass
class Predictions:
    """``kerascnn predict``'s rows: per image the top-k classes with their probabilities."""
    rows: list

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __getitem__(self, i):
        return self.rows[i]

    @property
    def classes(self) -> list:
        """The most probable class of every image."""
        return [r["top"][0]["class"] for r in self.rows]

    def as_dict(self) -> list:
        return list(self.rows)

    def __repr__(self) -> str:
        shown = "; ".join(f"{Path(str(r['image'])).name}: {r['top'][0]['class']} ({r['top'][0]['probability']:.3f})"
                          for r in self.rows[:5])
        more = f"; ... {len(self.rows) - 5} more" if len(self.rows) > 5 else ""
        return f"Predictions({len(self.rows)} image(s): {shown}{more})"

    def _repr_html_(self) -> str:
        k = max((len(r["top"]) for r in self.rows), default=0)
        rows = [[r["image"]] + [f"{t['class']} ({t['probability']:.3f})" for t in r["top"]] for r in self.rows]
        return _table(["image"] + [f"#{i + 1}" for i in range(k)], rows, "Predictions")


@dataclass
class Export:
    """``kerascnn export``'s result: the verified export's path, format, signature and check."""
    result: dict

    path = property(lambda self: Path(self.result["path"]))
    format = property(lambda self: self.result["format"])
    max_abs_diff = property(lambda self: self.result["max_abs_diff"])
    signature = property(lambda self: self.result.get("signature"))

    def as_dict(self) -> dict:
        return dict(self.result)

    def __repr__(self) -> str:
        return f"Export({self.path} ({self.format}), verified: max |diff| vs Keras {self.max_abs_diff:.2g})"

    def _repr_html_(self) -> str:
        keys = ("path", "format", "signature", "max_abs_diff", "tolerance", "trained_precision", "precision_diff",
                "note")
        return _table(["", ""], [[k, self.result[k]] for k in keys if k in self.result], "Export")
