"""Issue 21: the readers added last (TFRecord, IDX, CIFAR, .h5, safetensors, streamed folders) never
crash, hang or allocate what a header claims, and say what is wrong in one line naming the file."""
import json
import os
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
from conftest import run_kerascnn
from images import digits_folder
from PIL import Image
from pathlib import Path

from kerascnn.data import formats, stream


def _errors(text):
    return [ln for ln in text.splitlines() if ln.startswith("Error:")]


def _one_error(r, code=None) -> str:
    assert "Traceback" not in r.output, r.output[-3000:]
    assert len(_errors(r.output)) == 1, r.output[-3000:]
    if code is not None:
        assert r.exit_code == code, r.output[-3000:]
    return _errors(r.output)[0]


def _folder(root, per_class=16):
    """2 classes of 8x8 gray digits as PNG."""
    return digits_folder(root, classes=2, per_class=per_class)


def _corrupt_body(png: bytes) -> bytes:
    """The same PNG with its IDAT data replaced by bytes that do not inflate (valid header, valid CRC)."""
    i = png.index(b"IDAT") - 4
    (n,) = struct.unpack(">I", png[i:i + 4])
    data = b"\x78\x9c" + bytes((7 * j + 3) % 256 for j in range(n - 2))
    chunk = struct.pack(">I", n) + b"IDAT" + data + struct.pack(">I", zlib.crc32(b"IDAT" + data))
    return png[:i] + chunk + png[i + 12 + n:]


# --------------------------------------------------------------------------- TFRecord bytes, by hand
_CRC32C = []


def _crc32c(data: bytes) -> int:
    if not _CRC32C:
        for n in range(256):
            c = n
            for _ in range(8):
                c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
            _CRC32C.append(c)
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC32C[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked(data: bytes) -> bytes:
    c = _crc32c(data)
    return struct.pack("<I", (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def _record(payload: bytes) -> bytes:
    head = struct.pack("<Q", len(payload))
    return head + _masked(head) + payload + _masked(payload)


def _example(encoded: bytes, label: int, h: int = 8, w: int = 8, text: bytes = b"") -> bytes:
    import tensorflow as tf

    f = {"image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
         "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
         "image/height": tf.train.Feature(int64_list=tf.train.Int64List(value=[h])),
         "image/width": tf.train.Feature(int64_list=tf.train.Int64List(value=[w]))}
    if text:
        f["image/class/text"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[text]))
    return tf.train.Example(features=tf.train.Features(feature=f)).SerializeToString()


def _png(seed: int) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (8, 8), dtype=np.uint8), "L").save(buf, "PNG")
    return buf.getvalue()


def _shard(path, n=24, special=None):
    """``n`` records of 8x8 PNGs, labels 0/1; ``special``: {index: record bytes} replacing some."""
    special = special or {}
    with open(path, "wb") as fh:
        for i in range(n):
            fh.write(special.get(i) or _record(_example(_png(i), i % 2)))
    return path


def _bomb_png(side: int = 20000) -> bytes:
    """A valid 1-bit gray PNG of side x side white pixels (a few KB; 400 MB once decoded at 20,000)."""
    row = b"\0" + b"\xff" * ((side + 7) // 8)
    z = zlib.compressobj(9)
    body = b"".join(z.compress(row) for _ in range(side)) + z.flush()

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))


# --------------------------------------------------------------------------- crashes and hangs
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["on", "off"])
def test_a_record_claiming_2_to_the_60_bytes_is_refused_on_every_path(tmp_path, mode):
    huge = struct.pack("<Q", 1 << 60)
    shard = _shard(tmp_path / "train.tfrecord", special={23: huge + _masked(huge) + b"x" * 64})
    r = run_kerascnn("train", "convnet", "--data", shard, "--stream", mode, "--epochs", "1", "--run-dir",
                     tmp_path / "run", timeout=300)
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    errors = _errors(r.stderr)
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert f"{shard}: record 23 claims 1,152,921,504,606,846,976 bytes" in errors[0]
    assert not (tmp_path / "run").exists()


_SWAP = """
import dataclasses, json, os, sys
from pathlib import Path
from kerascnn.data import stream
root, policy = Path(sys.argv[1]), sys.argv[2]
x, y, _, _, _ = stream.scan(root, 0, policy)
x = dataclasses.replace(x, size=(8, 8), channels=1)
fifo, zero = x.files[3], x.files[5]
os.unlink(fifo); os.mkfifo(fifo)                 # swapped in after the scan, before the epoch reads them
os.unlink(zero); os.symlink("/dev/zero", zero)
try:
    n = sum(len(b[1]) for b in stream.stream_dataset(x, y, 4, 0, 0, 1))
    print(json.dumps({"batches": n, "bad": x.bad, "fifo": fifo, "zero": zero}))
except Exception as e:
    print(json.dumps({"error": str(e)[-1500:], "fifo": fifo, "zero": zero}))
"""


@pytest.mark.slow
def test_a_fifo_or_dev_zero_link_swapped_in_mid_epoch_is_named_not_read(tmp_path):
    out = {}
    for policy in ("stop", "skip"):
        root = _folder(tmp_path / policy)
        t = time.time()
        r = subprocess.run([sys.executable, "-c", _SWAP, str(root), policy], capture_output=True, text=True,
                           timeout=120, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        assert r.returncode == 0 and time.time() - t < 100, r.stderr[-2000:]
        out[policy] = json.loads(r.stdout.strip().splitlines()[-1])
    stop, skip = out["stop"], out["skip"]
    assert f"{stop['fifo']}: not a regular file" in stop["error"] or f"{stop['zero']}: not a regular file" in \
        stop["error"], stop
    assert sorted(skip["bad"]) == sorted([f"{skip['fifo']}: not a regular file (a device, pipe or socket); expected "
                                          f"an image file", f"{skip['zero']}: not a regular file (a device, pipe or "
                                          f"socket); expected an image file"])
    assert skip["batches"] == 4 * (25 // 4)      # 32 files, 80% train = 25 of them; 2 skipped, each batch full


_SHARD_SWAP = """
import dataclasses, json, os, struct, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
import test_reader_safety as T
from kerascnn.cli import one_line
from kerascnn.data import stream
d = Path(sys.argv[1])
x, y, _, _, _ = stream.scan(d, 0, "skip")
x = dataclasses.replace(x, size=(8, 8), channels=1)
n = 0
try:
    for b in stream.stream_dataset(x, y, 4, 0, 0, 3).as_numpy_iterator():
        n += 1
        if n == 2:    # mid-epoch: a shard is replaced by one whose record 3 claims 2^60 bytes
            huge = struct.pack("<Q", 1 << 60)
            T._shard(d / "x.tmp", n=24, special={3: huge + T._masked(huge) + b"x" * 64})
            os.replace(d / "x.tmp", d / "train-1.tfrecord")
    print(json.dumps({"batches": n}))
except Exception as e:
    print(json.dumps({"batches": n, "error": one_line(e)}))
"""


@pytest.mark.slow
def test_a_shard_replaced_mid_run_is_not_read_and_stops_the_run_in_one_line(tmp_path):
    _shard(tmp_path / "train-0.tfrecord")
    _shard(tmp_path / "train-1.tfrecord")
    r = subprocess.run([sys.executable, "-c", _SHARD_SWAP, str(tmp_path), os.path.dirname(__file__)],
                       capture_output=True, text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert f"{tmp_path / 'train-1.tfrecord'}: changed since kerascnn checked it" in got.get("error", ""), got
    assert got["batches"] < 27                  # stopped, not 3 full epochs without the shard


# --------------------------------------------------------------------------- memory bombs, under a 4 GiB cap
_CAPPED = """
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
from click.testing import CliRunner
from kerascnn.cli import cli
import keras, tensorflow                      # start-up is not what is timed
from kerascnn.data import load_data
load_data("digits")
out = []
for args in json.loads(sys.argv[1]):
    t = time.time()
    r = CliRunner().invoke(cli, args)
    out.append({"args": args, "code": r.exit_code, "output": r.output[-1500:], "seconds": time.time() - t})
print(json.dumps(out))
"""


def _bombs(root):
    """{name: (CLI args, words the one line must hold)}: each file a few KB, each declaring gigabytes."""
    import h5py

    cases = {}
    h5 = root / "bomb.weights.h5"                            # a legacy weight file: one 8 GB dataset, 0 bytes stored
    with h5py.File(h5, "w") as f:
        f.attrs["layer_names"] = [b"conv2d"]
        g = f.create_group("conv2d")
        g.attrs["weight_names"] = [b"kernel:0"]
        g.create_dataset("kernel:0", shape=(2_000_000_000,), dtype="float32", chunks=(1024,))
    cases["h5"] = (["train", "convnet", "--weights", str(h5), "--epochs", "1", "--run-dir", str(root / "r1")],
                   ["dataset conv2d/kernel:0 declares 2000000000", "refused before reading"])

    st = root / "bomb.safetensors"                            # sparse 8 GiB
    header = json.dumps({"w": {"dtype": "F32", "shape": [2 << 30], "data_offsets": [0, 8 << 30]}}).encode()
    with open(st, "wb") as fh:
        fh.write(struct.pack("<Q", len(header)) + header)
        fh.truncate(8 + len(header) + (8 << 30))
    cases["safetensors"] = (["train", "resnet18", "--weights", str(st), "--image-size", "32", "--batch-size", "4",
                             "--epochs", "1", "--run-dir", str(root / "r2")],
                            ["its tensors declare 8.00 GiB", "refused before reading"])

    import gzip

    idx = root / "idx"                                         # header: 800,000 x 100 x 100 (8 GB)
    idx.mkdir()
    with gzip.open(idx / "train-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(b"\0\0\x08\x03" + struct.pack(">III", 800_000, 100, 100) + b"\0" * 4096)
    for name in formats.IDX_FILES[1:]:
        with gzip.open(idx / (name + ".gz"), "wb") as fh:
            fh.write(b"\0\0\x08\x01" + struct.pack(">I", 1) + b"\0")
    cases["idx"] = (["train", "convnet", "--data", str(idx), "--epochs", "1", "--run-dir", str(root / "r3")],
                    [str(idx), "GiB", "available"])   # the in-memory estimate or the IDX header check

    sparse = root / "cifar-10-batches-py"                     # data_batch_1: a sparse 20 GB file
    sparse.mkdir()
    for name in ("batches.meta", "test_batch"):
        (sparse / name).write_bytes(b"\x80\x04}\x94.")
    with open(sparse / "data_batch_1", "wb") as fh:
        fh.truncate(20 << 30)
    cases["cifar-sparse"] = (["train", "convnet", "--data", str(sparse), "--epochs", "1", "--run-dir",
                              str(root / "r4")], [str(sparse), "GiB", "available"])   # the in-memory estimate or the size check

    import pickle

    nested = [0]
    for _ in range(34):                                        # 2^34 labels once expanded; 12.8 KB pickled
        nested = [nested, nested]
    shared = root / "shared" / "cifar-10-batches-py"
    shared.mkdir(parents=True)
    batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": nested}
    for name in ("data_batch_1", "test_batch"):
        (shared / name).write_bytes(pickle.dumps(batch, protocol=2))
    (shared / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"a", b"b"]}, protocol=2))
    cases["cifar-shared-list"] = (["train", "convnet", "--data", str(shared), "--epochs", "1", "--run-dir",
                                   str(root / "r5")], ["data_batch_1: 'labels' must be a flat list of 2 integers"])

    (root / "tall").mkdir()
    tall = _shard(root / "tall" / "train.tfrecord", special={7: _record(_example(_png(7), 1, 40_000, 40_000))})
    cases["tfrecord-declared"] = (["train", "convnet", "--data", str(tall), "--stream", "on", "--epochs", "1",
                                   "--run-dir", str(root / "r6")],
                                  [f"{tall}: record 7: image/height x image/width is 40,000x40,000"])
    cases["keras"] = (["predict", str(_keras_bomb(root)), str(root / "img.png")],
                      ["bomb.keras:model.weights.h5: dataset layers/dense/vars/0 declares 2000000000"])
    big = _bomb_png()
    for mode in ("on", "off"):
        (root / f"png-{mode}").mkdir()
        shard = _shard(root / f"png-{mode}" / "train.tfrecord", special={0: _record(_example(big, 0))})
        cases[f"tfrecord-png-{mode}"] = (["train", "convnet", "--data", str(shard), "--stream", mode, "--epochs", "1",
                                          "--run-dir", str(root / f"r7{mode}")],
                                         [f"{shard}: record 0: 20,000x20,000 pixels", "refused before decoding"])
    return cases


def _keras_bomb(root):
    """A .keras model (13 KB) whose weights file declares its Dense kernel as 2e9 float32 (0 stored)."""
    import io
    import zipfile

    import h5py
    import keras

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(),
                              keras.layers.Dense(3, activation="softmax")])
    model.save(root / "ok.keras")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "img.png")
    with zipfile.ZipFile(root / "ok.keras") as z:
        members = {n: z.read(n) for n in z.namelist()}
    out = io.BytesIO()
    with h5py.File(out, "w") as g, h5py.File(io.BytesIO(members["model.weights.h5"]), "r") as f:
        def copy(name, obj):
            if not isinstance(obj, h5py.Dataset):
                g.require_group(name)
            elif name == "layers/dense/vars/0":
                g.create_dataset(name, shape=(2_000_000_000,), dtype="float32", chunks=(1024,))
            else:
                g.create_dataset(name, data=obj[()])
        f.visititems(copy)
    members["model.weights.h5"] = out.getvalue()
    with zipfile.ZipFile(root / "bomb.keras", "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return root / "bomb.keras"


@pytest.mark.slow
def test_memory_bombs_are_refused_from_their_headers_in_one_line_under_a_4_gib_cap(tmp_path):
    cases = _bombs(tmp_path)
    r = subprocess.run([sys.executable, "-c", _CAPPED, json.dumps([args for args, _ in cases.values()])],
                       capture_output=True, text=True, timeout=400, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads(r.stdout.strip().splitlines()[-1])
    for (name, (_, words)), got in zip(cases.items(), results):
        errors = _errors(got["output"])
        assert got["code"] in (1, 2) and len(errors) == 1 and "Traceback" not in got["output"], (name, got)
        assert all(w in errors[0] for w in words), (name, errors[0])
        assert got["seconds"] < 10, (name, got["seconds"])
    assert not any((tmp_path / f"r{i}").exists() for i in range(1, 8))


# --------------------------------------------------------------------------- messages
@pytest.mark.parametrize("label, words", [
    ("1000000000000", "labels are not dense: 3 distinct labels but the largest is 1,000,000,000,000"),
    ("1e23", ":7: label '1e23' is not an integer class index"),
    ("--5", ":7: label '--5' is not an integer class index"),
    ("99999999999999999999999", ":7: label 99999999999999999999999 is far beyond any class index"),
])
@pytest.mark.parametrize("mode", ["on", "off"])
def test_a_bad_manifest_label_says_what_is_wrong(tmp_path, invoke, label, words, mode):
    root = _folder(tmp_path / "f", per_class=6)
    files = sorted(root.rglob("*.png"))
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\n" + "".join(f"{f},{label if i == 5 else i % 2}\n" for i, f in enumerate(files)))
    r = invoke("train", "convnet", "--data", manifest, "--stream", mode, "--epochs", "1", "--run-dir", tmp_path / "r")
    line = _one_error(r, 1)
    assert str(manifest) in line and words in line, line


@pytest.mark.parametrize("label, words", [
    (1 << 40, "not dense: 3 distinct labels but the largest is 1,099,511,627,776"),
    (-3, "record 5: image/class/label is -3, negative"),
])
def test_a_bad_tfrecord_label_says_what_is_wrong(tmp_path, invoke, label, words):
    shard = _shard(tmp_path / "train.tfrecord", special={5: _record(_example(_png(5), label))})
    r = invoke("train", "convnet", "--data", shard, "--stream", "on", "--epochs", "1", "--run-dir", tmp_path / "r")
    assert words in _one_error(r, 1)


def test_a_corrupt_image_body_in_a_streamed_folder_is_named_or_skipped(tmp_path, invoke):
    root = tmp_path / "f"
    _folder(root / "train")           # 32 training images: every one is read in every epoch (batch 4)
    _folder(root / "test", per_class=2)
    bad = root / "train" / "c1" / "004.png"
    bad.write_bytes(_corrupt_body(bad.read_bytes()))
    common = ["train", "convnet", "--data", root, "--stream", "on", "--epochs", "2", "--batch-size", "4",
              "--seed", "1", "--val-split", "0"]
    r = invoke(*common, "--run-dir", tmp_path / "stop")
    assert f"{bad}: not a readable image" in _one_error(r, 1)
    for run in ("skip", "again"):
        r = invoke(*common, "--bad-files", "skip", "--run-dir", tmp_path / run)
        assert r.exit_code == 0, r.output[-3000:]
        assert f"warning: skipped {bad}: not a readable image" in r.output
        assert (tmp_path / run / "bad_files.txt").read_text().startswith(f"{bad}: not a readable image")
    same = [json.loads((tmp_path / run / "metrics.json").read_text())["weights_sha256"] for run in ("skip", "again")]
    assert same[0] == same[1]          # skipping is a function of the files: the run is reproducible


def test_a_corrupt_image_in_a_tfrecord_is_named_by_shard_and_record_or_skipped(tmp_path, invoke):
    bad = _corrupt_body(_png(9))
    shard = _shard(tmp_path / "train.tfrecord", n=40, special={9: _record(_example(bad, 1))})
    common = ["train", "convnet", "--data", shard, "--stream", "on", "--epochs", "1", "--batch-size", "4",
              "--val-split", "0"]
    r = invoke(*common, "--run-dir", tmp_path / "stop")
    assert f"{shard}: record 9: not a readable image" in _one_error(r, 1)
    r = invoke(*common, "--bad-files", "skip", "--run-dir", tmp_path / "skip")
    assert r.exit_code == 0, r.output[-3000:]
    assert f"{shard}: record 9: not a readable image" in (tmp_path / "skip" / "bad_files.txt").read_text()


def test_skipping_keeps_the_epoch_order_of_the_other_images_and_resumes_exactly(tmp_path):
    import dataclasses

    root = _folder(tmp_path / "f")
    bad = root / "c0" / "002.png"
    bad.write_bytes(_corrupt_body(bad.read_bytes()))
    x, y, _, _, _ = stream.scan(root, 3, "skip")
    x = dataclasses.replace(x, size=(8, 8), channels=1)
    whole = list(stream.stream_dataset(x, y, 4, 3, 0, 3).as_numpy_iterator())
    steps = len(x) // 4
    assert len(whole) == 3 * steps and len(x.bad) == 1 and str(bad) in x.bad[0]
    resumed = list(stream.stream_dataset(x, y, 4, 3, 2, 3).as_numpy_iterator())   # from epoch 3, as --resume
    for (a, la), (b, lb) in zip(whole[2 * steps:], resumed):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    # epoch e: the (seed, epoch) permutation cut into batches as always; the batch holding the bad
    # file has its other images, repeated in order to fill its place
    from kerascnn import data as D

    k_bad = x.files.index(str(bad))
    images = np.concatenate([b for b, _ in stream.eval_dataset(x, y, 8).as_numpy_iterator()])
    by_file = dict(zip([k for k in range(len(x)) if k != k_bad], images))
    for e in range(3):
        order = D.epoch_order(len(x), 3, e).numpy()[:steps * 4].reshape(steps, 4)
        for b, files in enumerate(order):
            kept = [k for k in files if k != k_bad]
            want = np.stack([by_file[k] for k in np.resize(kept, 4)])
            np.testing.assert_array_equal(whole[e * steps + b][0], want)


@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_a_batch_that_cannot_be_filled_stops_in_one_line_instead_of_ending_the_stream(tmp_path, policy):
    import dataclasses

    root = _folder(tmp_path / "f")
    x, y, _, _, _ = stream.scan(root, 3, policy)
    x = dataclasses.replace(x, size=(8, 8), channels=1)
    for f in x.files[2:]:                         # all but two training images break after the scan
        Path(f).write_bytes(_corrupt_body(Path(f).read_bytes()))
    with pytest.raises(Exception) as e:
        list(stream.stream_dataset(x, y, 4, 3, 0, 1).as_numpy_iterator())
    from kerascnn.cli import one_line

    line = one_line(e.value)
    if policy == "stop":
        assert line.endswith("not a readable image (OSError: broken data stream when reading image file)"), line
    else:
        assert f"{root}: no image of a batch of epoch 1 decodes" in line, line
        assert len(x.bad) == len(set(x.bad)) and len(x.bad) >= 4, x.bad
