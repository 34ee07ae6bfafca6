"""A second adversarial pass (issue 21): GIF frames larger than the GIF's screen, HDF5 links in weight
files, safetensors dtypes numpy lacks; each refused in one line before anything is decoded or opened."""
import io
import json
import os
import struct

import numpy as np
import pytest

from kerascnn.data import images, safe_read


def _gif(screen=(16, 16), frames=((10_000, 10_000),)) -> bytes:
    """A GIF whose screen says ``screen`` and whose image descriptors say ``frames`` (w, h); a few
    bytes of LZW data each (giflib would still allocate every frame at its own size)."""
    out = b"GIF89a" + struct.pack("<HHBBB", *screen, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    out += b"\x21\xf9\x04\x00\x00\x00\x00\x00"                       # a graphic control extension
    for w, h in frames:
        out += b"\x2c" + struct.pack("<HHHHB", 0, 0, w, h, 0) + b"\x02" + b"\x02\x4c\x01" + b"\x00"
    return out + b"\x3b"


def test_gif_pixels_count_every_frame_not_the_screen():
    assert safe_read.image_pixels(_gif()) == 100_000_000                           # the screen says 256
    assert safe_read.image_pixels(_gif((20, 10), ((20, 10),) * 3)) == 600          # frames add up
    assert safe_read.image_pixels(_gif((28, 28), ((28, 28),))) == 784
    assert safe_read.image_pixels(b"GIF89a\x10\x00\x10\x00") == 256                 # too short to walk
    assert "frames claim 100,000,000 pixels" in images.diagnose_image(_gif(), "x.gif")


def _example(encoded: bytes, label: int) -> bytes:
    import tensorflow as tf

    f = {"image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
         "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
         "image/height": tf.train.Feature(int64_list=tf.train.Int64List(value=[8])),
         "image/width": tf.train.Feature(int64_list=tf.train.Int64List(value=[8]))}
    return tf.train.Example(features=tf.train.Features(feature=f)).SerializeToString()


@pytest.mark.slow
def test_a_gif_whose_frame_outgrows_its_screen_is_refused_in_a_streamed_tfrecord(tmp_path, invoke):
    """Seen: 108 KB GIFs (screen 16x16, frame 12,000x12,000) made a --stream on run take 7 GB."""
    import tensorflow as tf
    from PIL import Image

    shard = tmp_path / "train-0.tfrecord"
    with tf.io.TFRecordWriter(str(shard)) as w:
        for i in range(24):
            png = io.BytesIO()
            Image.fromarray(np.full((8, 8), 10 * i, np.uint8)).save(png, "PNG")
            w.write(_example(_gif() if i == 5 else png.getvalue(), i % 2))
    r = invoke("train", "convnet", "--data", shard, "--stream", "on", "--epochs", "1", "-q",
               "--run-dir", tmp_path / "r")
    errors = [ln for ln in r.output.splitlines() if ln.startswith("Error:")]
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output[-2000:]
    assert errors == [f"Error: {shard}: record 5: its frames claim 100,000,000 pixels (limit 89,478,485); refused "
                      f"before decoding (a decompression bomb?)"], r.output[-2000:]


def test_hdf5_links_in_a_weight_file_are_refused_before_anything_follows_them(tmp_path):
    import h5py

    from kerascnn.errors import KerasCNNError
    from kerascnn.pretrained.limits import check_h5_sizes

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)                                   # following this link blocks forever, SIGTERM ignored
    for name, link in [("external", h5py.ExternalLink(str(fifo), "/x")), ("loop", h5py.SoftLink("/b"))]:
        path = tmp_path / f"{name}.h5"
        with h5py.File(path, "w") as f:
            f.attrs["layer_names"] = [b"conv1_conv"]
            f.create_group("conv1_conv")["conv1_conv"] = link
            f["b"] = h5py.SoftLink("/conv1_conv/conv1_conv")
        with pytest.raises(KerasCNNError, match=r"dataset (b|conv1_conv/conv1_conv) \(a link\) keeps its data elsewhere"):
            check_h5_sizes(path)


def test_a_safetensors_dtype_numpy_lacks_is_named(tmp_path, invoke):
    head = json.dumps({"conv1.weight": {"dtype": "F8_E4M3", "shape": [64, 3, 7, 7], "data_offsets": [0, 9408]}})
    path = tmp_path / "f8.safetensors"
    path.write_bytes(struct.pack("<Q", len(head)) + head.encode() + b"\0" * 9408)
    img = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(img)
    r = invoke("predict", "resnet18", "--weights", path, img)
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output[-2000:]
    assert r.output.strip().splitlines()[-1] == f"Error: cannot read {path}: a tensor dtype numpy cannot hold " \
                                                "(float8_e4m3fn)", r.output[-2000:]


@pytest.mark.parametrize("name", ["pipe.npz", "pipe.csv"])
def test_a_fifo_given_as_data_is_refused_not_opened(tmp_path, name):
    """Seen: `train --data pipe.npz` (the memory plan) and `--data pipe.csv` (the file count) waited
    forever (only SIGTERM ended them)."""
    import threading
    import time

    from kerascnn.data.arrays import _npz_members
    from kerascnn.data.stream import count_files
    from kerascnn.errors import DataError

    fifo = tmp_path / name
    os.mkfifo(fifo)
    done = threading.Event()

    def unblock():      # old code: a reader blocks in open(); feed it a byte so the test ends either way
        while not done.wait(0.05):
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                continue
            os.write(fd, b"x")
            os.close(fd)
            return

    t = threading.Thread(target=unblock, daemon=True)
    t.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(DataError, match="not a regular file"):
            (_npz_members if name.endswith(".npz") else count_files)(fifo)
    finally:
        done.set()
    assert time.monotonic() - t0 < 5


def test_evaluate_out_never_replaces_files_it_did_not_write(tmp_path, invoke):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "metrics.json").write_text("my notes\n")
    r = invoke("evaluate", "convnet", "--out", mine)
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output[-2000:]
    assert r.output.strip().splitlines()[-1] == (f"Error: --out {mine} already holds metrics.json, not written by "
                                                 f"kerascnn evaluate; it is left as it is: choose another --out")
    assert sorted(os.listdir(mine)) == ["metrics.json"] and (mine / "metrics.json").read_text() == "my notes\n"
    ours = tmp_path / "ours"
    for _ in range(2):      # its own earlier result is replaced, as before
        r = invoke("evaluate", "convnet", "--out", ours)
        assert r.exit_code == 0, r.output[-2000:]
    assert sorted(os.listdir(ours)) == ["confusion.json", "confusion.png", "metrics.json"]
