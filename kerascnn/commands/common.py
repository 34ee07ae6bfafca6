"""Option types and decorators shared by the commands (click only, no TensorFlow)."""
from __future__ import annotations

import json
import re

import click


class IntTuple(click.ParamType):
    """'32,32,3' or '32x32x3' -> (32, 32, 3): ``n`` positive integers (``n`` may be a set of lengths)."""

    name = "ints"

    def __init__(self, lengths=(3,), what="H,W,C", maximum=100_000, channels_last=False):
        self.lengths, self.what, self.maximum = tuple(lengths), what, maximum
        self.channels_last = channels_last

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        text = str(value).strip()
        insist = self.channels_last and text.endswith("!")
        if insist:
            text = text[:-1]
        parts = [p for p in re.split(r"[,x× ]+", text.lower()) if p]
        try:
            nums = tuple(int(p) for p in parts)
        except ValueError:
            self.fail(f"expected {self.what} as integers, e.g. {self._example()}; received {value!r}", param, ctx)
        if len(nums) not in self.lengths:
            self.fail(f"expected {self.what} ({' or '.join(map(str, self.lengths))} integers); "
                      f"received {value!r}", param, ctx)
        if any(n < 1 for n in nums):
            self.fail(f"every size must be >= 1; received {value!r}", param, ctx)
        if any(n > self.maximum for n in nums):
            self.fail(f"sizes above {self.maximum} are not supported; received {value!r}", param, ctx)
        if self.channels_last and not insist and len(nums) == 3 and nums[0] in (1, 3, 4) and min(nums[1:]) > 4:
            h, w, c = nums[1], nums[2], nums[0]
            self.fail(f"{text} looks channels-first (C,H,W); kerascnn reads H,W,C: write {h},{w},{c}, "
                      f"or {text}! to mean H={nums[0]}, W={nums[1]}, C={nums[2]}", param, ctx)
        return nums

    def _example(self):
        return {3: "28,28,1", 2: "28,28", 1: "28"}[self.lengths[0]]


INPUT_SHAPE = IntTuple((3,), "H,W,C", channels_last=True)  # '3,32,32' is refused as channels-first; '3,32,32!' insists
IMAGE_SIZE = IntTuple((1, 2), "H,W (or one number for square images)")


def input_shape_option(f):
    return click.option("--input-shape", type=INPUT_SHAPE, default=None, metavar="H,W,C",
                        help="Input size, e.g. 28,28,1 (default: the model's natural input).")(f)


def classes_option(f):
    return click.option("--classes", "num_classes", type=click.IntRange(1, 1_000_000), default=None,
                        help="Number of classes (default: the model's, or the data's).")(f)


def model_options(f):
    return click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
                        help="Model option, e.g. -o small_input=true (see `kerascnn list --format json`).")(f)


PREPROCESSING = click.Choice(["caffe", "torch", "tf", "none"])


def class_names_option(f):
    return click.option("--class-names", default=None, metavar="FILE|a,b,c",
                        help="Names of the classes, one per label: a file (one per line, or a JSON list) or a "
                             "comma list (default: the run's, the export's or the data's own).")(f)


def pretrained_options(f, preprocessing_help="With --weights: the input preprocessing (default: the weights' own)."):
    """--weights, --preprocessing and -o for a registered MODEL name (evaluate, predict, export)."""
    f = click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
                     help="Model option for a registered MODEL, e.g. -o variant=keras.")(f)
    f = click.option("--preprocessing", type=PREPROCESSING, default=None, help=preprocessing_help)(f)
    return click.option("--weights", default=None, metavar="FILE|imagenet",
                        help="For a registered MODEL: load these pretrained weights "
                             "(docs/transfer-learning.md).")(f)


def format_option(f):
    return click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
                        show_default=True, help="Output format.")(f)


def echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


def load_tensorflow() -> None:
    """Import TensorFlow (quietly) once the command has checked everything that needs no model.

    Commands call this after click's parsing and their own cheap checks, so a bad argument is
    answered in well under a second instead of after TensorFlow's 5-20 s import."""
    from kerascnn.tfquiet import import_tensorflow_if_installed

    import_tensorflow_if_installed()


class DataPath(click.Path):
    """``--data``: an existing path, or a glob of TFRecord shards (``shards/train-*``)."""

    def __init__(self):
        super().__init__(exists=True)

    def convert(self, value, param, ctx):
        from pathlib import Path

        from kerascnn.data import formats

        if isinstance(value, str) and not Path(value).exists() and formats.detect(Path(value)) == "tfrecord-glob":
            return value
        return super().convert(value, param, ctx)
