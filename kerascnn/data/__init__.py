"""Data: built-in data sets, ``.npz`` files, class folders and the formats people have -> validated
arrays -> ``tf.data``; or, for data bigger than memory, a stream of files decoded per batch.

``load_data`` returns raw, validated images (``ImageData``); ``prepare_images`` resizes, adapts
channels (gray <-> RGB) and scales them for a model; ``train_dataset`` batches them in an order
that is a function of ``(seed, epoch)`` only, so a resumed run sees exactly the batches an
uninterrupted one would. Every problem is a one-line ``DataError`` naming the file and what is wrong.

One module per concern (this package re-exports their names, so ``from kerascnn import data`` /
``data.load_data`` keep working):

- ``arrays``: ``ImageData``, the array checks every source passes, ``.npz`` files (header checks);
- ``images``: image files and class folders (header / bomb checks, PIL decode, scans, stacking);
- ``loading``: ``load_data`` (built-ins, ``--data``), ``parse_class_names``, image files decoded into memory;
- ``splits`` / ``prepare``: the seeded validation split; resize + channels + scale;
- ``pipeline``: the in-memory ``tf.data`` pipelines (``epoch_order``, ``train_dataset``, ``eval_dataset``);
- ``formats``: CIFAR archives, ``keras.datasets`` caches, IDX, manifests, TFRecord shards;
- ``stream``: folders / manifests streamed from disk (header pass, per-batch decode, worker shards);
- ``records``: TFRecord shards streamed (label pass, (seed, epoch) shard order + window shuffle, by-file shards);
- ``source``: ``DataSource``, the one protocol the engines, the epoch loop and evaluation read (arrays in
  memory, image files, TFRecord shards, a decoded cache), and a run's ``training_sources``.
"""
from kerascnn.data.arrays import (NPZ_KEYS, ImageData, _as_nhwc, _check_fits, _check_pair, _class_names, _labels,
                                  _load_npz, _npz_members, _pixel_scale, _short, _unit_range, _validated,
                                  check_labels, check_npz_headers)
from kerascnn.data.images import (IMAGE_EXTENSIONS, DataWarning, _check_headers, _check_image_header, _conform,
                                  _decode, _open_header, _read_image, _regular_file, _scan_folder, _stack,
                                  _warn_skipped, echo_warnings, image_files, walk_files, count_image_files)
from kerascnn.data.loading import (BUILTIN, CLASS_NAMES, _decode_stack, _keras_cache_dir, _load_digits, _load_folder,
                                   _load_keras, iter_image_batches, load_data, load_image_batch, load_image_files,
                                   parse_class_names)
from kerascnn.data.pipeline import _augmenter, epoch_order, eval_dataset, train_dataset
from kerascnn.data.prepare import prepare_images
from kerascnn.data.safe_read import MAX_IMAGE_PIXELS
from kerascnn.data.splits import split_validation

__all__ = ["BUILTIN", "CLASS_NAMES", "IMAGE_EXTENSIONS", "MAX_IMAGE_PIXELS", "NPZ_KEYS", "DataWarning", "ImageData",
           "check_labels", "check_npz_headers", "echo_warnings", "epoch_order", "eval_dataset", "load_data",
           "image_files", "iter_image_batches", "walk_files", "count_image_files", "load_image_batch", "load_image_files", "parse_class_names", "prepare_images", "split_validation", "train_dataset",
           "_as_nhwc", "_augmenter", "_check_fits", "_check_headers", "_check_image_header", "_check_pair",
           "_class_names", "_conform", "_decode", "_decode_stack", "_keras_cache_dir", "_labels", "_load_digits", "_load_folder",
           "_load_keras", "_load_npz", "_npz_members", "_open_header", "_pixel_scale", "_read_image",
           "_regular_file", "_scan_folder", "_short", "_stack", "_unit_range", "_validated", "_warn_skipped"]
