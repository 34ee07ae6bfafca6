"""`kerascnn shards`: a class folder -> TFRecord shards (image/encoded + image/class/label)."""
from __future__ import annotations

from pathlib import Path

import click

from kerascnn.commands.common import echo_json, format_option


@click.command(short_help="Write a class folder as TFRecord shards.")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.argument("out", type=click.Path())
@click.option("--shards", type=click.IntRange(1, 100_000), default=4, show_default=True,
              help="Shards per split (fewer when a split has fewer images).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the order files are dealt to shards.")
@format_option
def shards(folder, out, shards, seed, fmt):
    """Write FOLDER (one sub-folder per class; train/ and test/ when present) as TFRecord
    shards OUT/train-00000-of-0000N.tfrecord (and test-...): the original image bytes as
    `image/encoded`, the class index as `image/class/label`, its name as `image/class/text`.
    OUT must not exist or be empty; it appears only when every shard is written.
    Train on them with `kerascnn train MODEL --data OUT`."""
    from kerascnn.commands.common import load_tensorflow
    from kerascnn.data.formats import write_shards

    load_tensorflow()
    counts = write_shards(Path(folder), Path(out), shards, seed)
    if fmt == "json":
        echo_json({"out": str(out), "images": counts, "shards": shards})
        return
    for split, n in counts.items():
        click.echo(f"{split}: {n:,} images in {min(shards, n)} shard(s) -> {out}/{split}-*.tfrecord")
