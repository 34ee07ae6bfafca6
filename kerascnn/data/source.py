"""One protocol for the images a run trains on and scores: ``DataSource``.

Images come as arrays in memory (``ArraySource``), or from disk batch by batch
(``StreamSource``): image files and manifests (``stream.FileImages``), TFRecord shards
(``records.RecordImages``) and the decoded copy of either (``--cache disk``: the same images
with a ``cache_file``). The engines, the epoch loop and evaluation consume a ``DataSource`` and
never ask which kind it is; only ``kerascnn/data`` does (``as_source``).

Every kind gives the same things: its length and labels, batches in file order for scoring
(``eval_dataset`` in ``tf.data``, ``batches`` in NumPy), the training stream of epochs
first..epochs-1 in the (seed, epoch) order (``train_dataset``; a worker's share with ``worker``;
from a step inside the first epoch with ``first_step``),
the same on a ``tf.distribute`` strategy (``distribute_train``), the start-up line's words for
itself (``describe``) and a decoded copy (``cached``). ``in_memory`` says whether ``arrays()``
holds the prepared images (an engine that keeps them on its devices, as the JAX engine does,
uses them; the others read the stream).

``training_sources`` loads a run's training and validation sources from the options.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np

from kerascnn.errors import ConfigError


class DataSource(Protocol):
    in_memory: bool
    labels: np.ndarray
    bad: list                    # "path: reason" of the files skipped (--bad-files skip)

    def __len__(self) -> int: ...

    @property
    def input_shape(self) -> tuple:
        """(H, W, C) of the images it delivers."""

    def arrays(self) -> tuple:
        """(x float32 NHWC prepared, y int) -- only where ``in_memory``."""

    def batches(self, batch_size: int, strict: bool = False) -> Iterator[tuple]:
        """(x, y) NumPy batches in file order, model-ready. A streamed image that fails to decode
        is left out with its label under ``--bad-files skip``, unless ``strict`` (callers that match
        the outputs to the labels by position): then it stops with one line naming it."""

    def eval_dataset(self, batch_size: int):
        """``tf.data`` batches in file order (no shuffle)."""

    def train_dataset(self, batch_size: int, seed: int, first_epoch: int, epochs: int, augment: bool = False,
                      worker: tuple = (0, 1), first_step: int = 0):
        """``tf.data``: epochs first_epoch..epochs-1, each ``len // batch_size`` full batches in the
        (seed, epoch) order; ``worker`` (index, count): that worker's share of every batch;
        ``first_step``: the stream starts at that batch of ``first_epoch`` (the ones before are
        skipped before anything is decoded)."""

    def distribute_train(self, strategy, batch_size: int, seed: int, first_epoch: int, epochs: int,
                         augment: bool = False, first_step: int = 0):
        """``train_dataset`` distributed by a ``tf.distribute`` strategy (each worker reads its share)."""

    def describe(self, readers: int = 1, noun: str = "workers") -> str:
        """The start-up line's data path ("in memory", "streamed from disk, sharded by ...")."""

    def cached(self, mode: str, path: Path) -> "DataSource":
        """Decoded once: into memory (``mode`` "memory") or into the .npy file ``path`` ("disk")."""


@dataclass
class ArraySource:
    """Prepared images held in memory (float32 NHWC scaled) and their labels."""
    x: np.ndarray
    labels: np.ndarray = None
    bad: list = field(default_factory=list)
    in_memory = True

    def __len__(self) -> int:
        return len(self.x)

    @property
    def input_shape(self) -> tuple:
        return tuple(self.x.shape[1:])

    def arrays(self) -> tuple:
        return self.x, self.labels

    def batches(self, batch_size: int, strict: bool = False):
        for i in range(0, len(self.x), batch_size):
            yield self.x[i:i + batch_size], None if self.labels is None else self.labels[i:i + batch_size]

    def eval_dataset(self, batch_size: int):
        from kerascnn.data.pipeline import eval_dataset

        return eval_dataset(self.x, self.labels, batch_size)

    def train_dataset(self, batch_size, seed, first_epoch, epochs, augment=False, worker=(0, 1), first_step=0):
        from kerascnn.data.pipeline import train_dataset

        if tuple(worker) != (0, 1):
            raise ConfigError("data in memory is not read in worker shares; stream it from disk (--stream on)")
        return train_dataset(self.x, self.labels, batch_size, seed, first_epoch, epochs, augment=augment,
                             first_step=first_step)

    def distribute_train(self, strategy, batch_size, seed, first_epoch, epochs, augment=False, first_step=0):
        return strategy.experimental_distribute_dataset(
            self.train_dataset(batch_size, seed, first_epoch, epochs, augment, first_step=first_step))

    def describe(self, readers: int = 1, noun: str = "workers") -> str:
        return "in memory"

    def cached(self, mode: str, path: Path) -> "ArraySource":
        return self


@dataclass
class StreamSource:
    """Images read from disk batch by batch: ``stream.FileImages`` (folders, manifests; with a
    ``cache_file`` the decoded copy) or ``records.RecordImages`` (TFRecord shards)."""
    images: object
    labels: np.ndarray
    in_memory = False

    def __len__(self) -> int:
        return len(self.images)

    @property
    def input_shape(self) -> tuple:
        return tuple(self.images.size) + (self.images.channels,)

    @property
    def bad(self) -> list:
        return self.images.bad

    @property
    def cache_file(self):
        return self.images.cache_file

    def arrays(self) -> tuple:
        raise TypeError("images streamed from disk are not held in memory (see DataSource.in_memory)")

    def batches(self, batch_size: int, strict: bool = False):
        from kerascnn.data import stream

        return stream.eval_dataset(self.images, self.labels, batch_size, strict).as_numpy_iterator()

    def eval_dataset(self, batch_size: int):
        from kerascnn.data import stream

        return stream.eval_dataset(self.images, self.labels, batch_size)

    def train_dataset(self, batch_size, seed, first_epoch, epochs, augment=False, worker=(0, 1), first_step=0):
        from kerascnn.data import stream

        return stream.stream_dataset(self.images, self.labels, batch_size, seed, first_epoch, epochs, augment,
                                     worker=worker, first_step=first_step)

    def distribute_train(self, strategy, batch_size, seed, first_epoch, epochs, augment=False, first_step=0):
        from kerascnn.data import stream

        return stream.distribute_train(strategy, self.images, self.labels, batch_size, seed, first_epoch, epochs,
                                       augment, first_step=first_step)

    def describe(self, readers: int = 1, noun: str = "workers") -> str:
        from kerascnn.data import records, stream

        if not isinstance(self.images, stream.FileImages):   # TFRecord shards: by file or by record
            how = records.policy(len(self.images.shards_holding()), readers)[1]
            return "streamed from TFRecord shards" + (f", {how}" if how else "")
        return "streamed from disk" + (f", sharded by file over {readers} {noun}" if readers > 1 else "")

    def cached(self, mode: str, path: Path) -> DataSource:
        from kerascnn.data import stream

        if mode == "memory":
            return ArraySource(stream.decode_all(self.images), self.labels)
        if not len(self):
            return self
        return StreamSource(stream.disk_cache(self.images, path), self.labels)


def as_source(x, y=None) -> DataSource:
    """``x`` as a ``DataSource``: a source stays itself; an array is in memory; images on disk
    (``stream.FileImages``, ``records.RecordImages``) stream."""
    if isinstance(x, (ArraySource, StreamSource)):
        return x
    if isinstance(x, np.ndarray):
        return ArraySource(x, None if y is None else np.asarray(y))
    return StreamSource(x, np.asarray(y))


# --------------------------------------------------------------------------- a run's sources
@dataclass
class TrainingData:
    """What a run trains on: the loaded data set (name, classes, pixel scale) and its training and
    validation sources at the model's input size."""
    data: object                  # data.ImageData (its x may be stream.FileImages)
    train: DataSource
    val: DataSource


def training_sources(dataset, data, size: tuple, channels: int, *, seed: int, val_split: float,
                     class_names=None, stream_mode: str = "auto", bad_files: str = "stop") -> TrainingData:
    """The training/validation split (seeded, stratified) of ``dataset`` or ``data``, prepared for
    a (size, channels) input: in memory, or streamed from disk when ``stream_mode`` says so."""
    from kerascnn.data import stream

    if stream.wants_stream(stream_mode, data, size, channels):
        return _streamed(Path(data), size, channels, seed, val_split, class_names, bad_files)
    from kerascnn import data as D

    d = D.load_data(dataset, data, seed=seed)
    if class_names:
        if len(class_names) != d.num_classes:
            raise ConfigError(f"--class-names gives {len(class_names)} names but {d.name} has "
                              f"{d.num_classes} classes")
        import dataclasses

        d = dataclasses.replace(d, class_names=list(class_names))
    x_tr, y_tr, x_val, y_val = D.split_validation(d.x_train, d.y_train, float(val_split), seed)
    x_tr = D.prepare_images(x_tr, size, channels, d.pixel_scale)
    x_val = D.prepare_images(x_val, size, channels, d.pixel_scale)
    return TrainingData(d, ArraySource(x_tr, y_tr), ArraySource(x_val, y_val))


def _streamed(path: Path, size, channels, seed, val_split, class_names, bad_files) -> TrainingData:
    import dataclasses

    from kerascnn import data as D
    from kerascnn.data import stream

    x_tr, y_tr, x_te, y_te, names = stream.scan(path, seed, bad_files)
    k = D.check_labels(path, {"y_train": y_tr, "y_test": y_te}, names)
    names = list(class_names or names or [str(i) for i in range(k)])
    if len(names) != k:
        raise ConfigError(f"--class-names gives {len(names)} names but {path} has {k} classes")
    d = D.ImageData(x_tr, y_tr, x_te, y_te, names, stream.source_name(path))
    i_tr, _, i_val, _ = D.split_validation(np.arange(len(x_tr)), y_tr, float(val_split), seed)
    fit = {"size": tuple(size), "channels": int(channels)}
    xt, xv = dataclasses.replace(x_tr.subset(i_tr), **fit), dataclasses.replace(x_tr.subset(i_val), **fit)
    xt.bad = list(x_tr.bad)
    return TrainingData(d, StreamSource(xt, y_tr[i_tr]), StreamSource(xv, y_tr[i_val]))
