"""Issue 25: data from disk as fast as Keras's pipeline and honest about memory -- the behaviour
behind the speed (speed itself: benchmarks/data_speed.py). Small data, in-process where possible."""


import numpy as np
import pytest
from images import random_folder
from PIL import Image

from kerascnn import data as D
from kerascnn.data import headers, records, stream
from kerascnn.errors import DataError


def _jpegs(root, per_class=6, size=(20, 16), mode="RGB", classes=3, seed=0):
    """``classes`` folders c0.. of random JPEGs (quality 85) named 00.jpg, 01.jpg, ..."""
    return random_folder(root, classes, per_class, size, mode, "jpg", seed, name="{i:02d}", quality=85)


def test_header_pass_reads_jpeg_and_png_itself_and_agrees_with_pil(tmp_path):
    """The header pass parses plain JPEG/PNG headers itself (no PIL object per file) and hands every
    other file to PIL: the same (size, channels, format, mode) as PIL's lazy open, the same errors."""
    rng = np.random.default_rng(1)
    files = []
    for i, (mode, fmt, kw) in enumerate([("RGB", "JPEG", {}), ("L", "JPEG", {}), ("RGB", "JPEG", {"progressive": True}),
                                         ("CMYK", "JPEG", {}), ("RGB", "PNG", {}), ("L", "PNG", {}),
                                         ("P", "PNG", {}), ("RGBA", "PNG", {}), ("LA", "PNG", {}),
                                         ("I;16", "PNG", {}), ("1", "PNG", {}), ("RGB", "BMP", {}),
                                         ("RGB", "JPEG", {"exif": b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x00"})]):
        im = Image.fromarray(rng.integers(0, 256, (9 + i, 7 + i, 3), dtype=np.uint8)).convert(mode)
        f = tmp_path / f"{i:02d}.{fmt.lower()}"
        im.save(f, fmt, **kw)
        files.append(str(f))
    for f in files:
        with Image.open(f) as im:
            want = (im.size[1], im.size[0], 1 if im.mode in headers.GRAY_MODES else 3, im.format, im.mode)
        assert headers.read_header(f, 1 << 40) == want, f
    fast = [headers._fast(f) is not None for f in files]
    assert fast == [True, True, True, False, True, True, False, False, False, False, False, False, False]
    # broken ones: the fast path declines and PIL's words name the file, as before
    good = open(files[4], "rb").read()
    (tmp_path / "crc.png").write_bytes(good[:29] + bytes([good[29] ^ 1]) + good[30:])   # IHDR CRC wrong
    (tmp_path / "cut.jpg").write_bytes(open(files[0], "rb").read()[:40])                  # ends inside a table
    (tmp_path / "empty.jpg").write_bytes(b"")
    for name, words in (("crc.png", "not a readable image"), ("cut.jpg", "not a readable image"),
                        ("empty.jpg", "empty image file (0 bytes)")):
        with pytest.raises(DataError) as e:
            headers.header_pass([str(tmp_path / name)], "stop")
        assert f"{name}: {words}" in str(e.value)
    keep, shapes, bad = headers.header_pass(files + [str(tmp_path / "crc.png")] + files, "skip", threads=3)
    assert keep == list(range(13)) + list(range(14, 27)) and len(bad) == 1 and "crc.png" in bad[0]
    with pytest.raises(DataError, match="crc.png"):   # stop: the first bad file in list order
        headers.header_pass(files * 40 + [str(tmp_path / "crc.png")] + [str(tmp_path / "empty.jpg")], "stop")


def test_memory_limit_is_read_once_per_pass_not_per_file(tmp_path, monkeypatch):
    """``guard.available_bytes`` reads /proc/meminfo and the cgroup files: once per file it was 115 of
    353 s of one evaluate (70,005 calls). In-memory load, stream decode through PIL, predict: once."""
    root = _jpegs(tmp_path / "f", per_class=8)
    for k in range(3):   # palette PNGs go through PIL (FileImages.load) in the stream
        Image.new("P", (20, 16), 7).save(root / f"c{k}" / "zz.png")
    from kerascnn import guard

    real, calls = guard.available_bytes, []
    monkeypatch.setattr(guard, "available_bytes", lambda: calls.append(1) or real())
    D.load_data(data=str(root), seed=0)
    assert 0 < len(calls) <= 4, len(calls)          # 27 files: was 27 + 3
    calls.clear()
    x, y, *_ = stream.scan(root, 0)
    import dataclasses

    fi = dataclasses.replace(x, size=(8, 8), channels=1)
    assert sum(len(xb) for xb, _ in stream.eval_dataset(fi, y, 4).as_numpy_iterator()) == len(fi)
    assert 0 < len(calls) <= 2, len(calls)
    calls.clear()
    batches = list(D.iter_image_batches([str(root)], (8, 8), 1, 1 / 255, batch=5))
    assert sum(len(f) for _, f in batches) == 27 and 0 < len(calls) <= 3, len(calls)   # was 3 per file


def test_jpeg_pixels_of_the_stream_equal_the_in_memory_pixels(tmp_path):
    """TensorFlow's default JPEG IDCT differs from PIL's by up to 5 levels: the stream, the TFRecord
    stream and the in-memory path now all decode JPEG with PIL's pixels (libjpeg's accurate IDCT)."""
    root = tmp_path / "f"
    _jpegs(root / "train", per_class=4, size=(24, 24))
    _jpegs(root / "test", per_class=1, size=(24, 24), seed=1)
    mem = D.load_data(data=str(root), seed=3)
    x_tr, y_tr, *_ = stream.scan(root, 3)
    assert all(x_tr.native)
    pil = np.stack([np.asarray(Image.open(f)) for f in x_tr.files])
    np.testing.assert_array_equal(mem.x_train, pil)    # in memory: PIL's pixels, decoded by TF in parallel
    import dataclasses

    for size, ch in (((24, 24), 3), ((12, 12), 1)):
        fi = dataclasses.replace(x_tr, size=size, channels=ch)
        got = np.concatenate([xb for xb, _ in stream.eval_dataset(fi, y_tr, 4).as_numpy_iterator()])
        want = D.prepare_images(pil, size, ch, 1 / 255)
        np.testing.assert_allclose(got, want, rtol=0, atol=4 * np.finfo(np.float32).eps)
    from kerascnn.data import formats

    formats.write_shards(root, tmp_path / "s", 2)    # the original JPEG bytes, dealt in a shuffled order
    shards = D.load_data(data=str(tmp_path / "s"), seed=3)
    s_tr, s_y, *_ = stream.scan(tmp_path / "s", 3)
    assert len(shards.x_train) == len(s_y) == 12
    np.testing.assert_array_equal(np.sort(shards.x_train.reshape(12, -1), axis=0),
                                  np.sort(pil.reshape(12, -1), axis=0))   # the same images, PIL's pixels
    fs = dataclasses.replace(s_tr, size=(12, 12), channels=1)
    got = np.concatenate([xb for xb, _ in stream.eval_dataset(fs, s_y, 5).as_numpy_iterator()])
    np.testing.assert_allclose(got, D.prepare_images(shards.x_train, (12, 12), 1, shards.pixel_scale),
                               rtol=0, atol=4 * np.finfo(np.float32).eps)


def test_evaluate_reads_only_the_split_it_scores(tmp_path, monkeypatch):
    """``evaluate`` on the test split opens no training file: a corrupt training image no longer
    stops it, and the header pass sees only test files (train/ + test/, and the seeded 80/20 split)."""
    root = _jpegs(tmp_path / "f" / "train", per_class=6)
    _jpegs(tmp_path / "f" / "test", per_class=2, seed=1)
    (root / "c1" / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    seen = []
    real = headers.read_header
    monkeypatch.setattr(headers, "read_header", lambda f, have: seen.append(str(f)) or real(f, have))
    x, y, names, k = stream.scan_split(tmp_path / "f", 0, "stop", "test")
    assert (len(x), k, names) == (6, 3, ["c0", "c1", "c2"]) and all("/test/" in f for f in seen)
    assert sorted(seen) == sorted(x.files)
    with pytest.raises(DataError, match="zz_broken.jpg: not a readable image"):
        stream.scan_split(tmp_path / "f", 0, "stop", "train")
    seen.clear()
    flat = _jpegs(tmp_path / "g", per_class=10)
    x, y, names, k = stream.scan_split(flat, 4, "stop", "test")
    assert sorted(seen) == sorted(x.files) and len(x) == 6
    _, _, x_te, y_te, _ = stream.scan(flat, 4)    # the same seeded 80/20 split as the whole scan
    assert x.files == x_te.files and np.array_equal(y, y_te)


def test_evaluate_command_streams_the_test_split_only(tmp_path, invoke):
    import json

    root = tmp_path / "f"
    _jpegs(root / "train", per_class=8, size=(12, 12), mode="L")
    _jpegs(root / "test", per_class=3, size=(12, 12), mode="L", seed=2)
    r = invoke("train", "lenet5", "--data", root, "--epochs", "1", "--batch-size", "8",
               "--val-split", "0", "-q", "--run-dir", tmp_path / "run")
    assert r.exit_code == 0, r.output
    (root / "train" / "c0" / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff garbage")   # added after training
    ev = invoke("evaluate", tmp_path / "run", "--format", "json")
    assert ev.exit_code == 0, ev.output
    assert json.loads(ev.stdout)["images"] == 9


def test_tensorflow_error_text_shows_the_cause_not_node_names(tmp_path):
    from kerascnn.cli import one_line
    from kerascnn.errors import tf_cause

    raw = ("{{function_node __wrapped__IteratorGetNext_output_types_1_device_/job:localhost/replica:0/task:0/"
           "device:CPU:0}} Error in user-defined function passed to MapDataset:4 transformation with iterator: "
           "Iterator::Root::ParallelMapV2: jpeg::Uncompress failed. Invalid JPEG data or crop window.\n\t "
           "[[{{function_node map_while_body_36}}{{node map/while/DecodeJpeg}}]] [Op:IteratorGetNext] name: ")
    assert tf_cause(raw) == "jpeg::Uncompress failed. Invalid JPEG data or crop window."
    assert one_line(Exception(raw)) == "while reading the data: jpeg::Uncompress failed. Invalid JPEG data or crop window."
    # a shard whose record body is damaged (its length framing intact): the cause, within 80 characters
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(tmp_path / "train-0.tfrecord")) as w:
        for i in range(4):
            w.write(tf.train.Example(features=tf.train.Features(feature={
                "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x" * 50])),
                "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 2]))}))
                .SerializeToString())
    raw = bytearray((tmp_path / "train-0.tfrecord").read_bytes())
    raw[40] ^= 0xFF   # inside the first record's payload: its CRC no longer matches
    (tmp_path / "train-0.tfrecord").write_bytes(bytes(raw))
    assert records.count_records(tmp_path / "train-0.tfrecord") == 4
    with pytest.raises(DataError) as e:
        stream.scan(tmp_path / "train-0.tfrecord", 0)
    assert "corrupted record" in str(e.value) and "function_node" not in str(e.value), str(e.value)


def test_tfrecord_batches_are_the_record_order_cut_into_batches(tmp_path):
    """The TFRecord stream now cuts its batches from the permuted windows (``epoch_batches``, no
    tf.data element per record): exactly ``epoch_records``'s order, for one or several workers."""
    import dataclasses

    from kerascnn.data import formats

    formats.write_shards(_jpegs(tmp_path / "f", per_class=12, size=(8, 8)), tmp_path / "s", 4)  # 80/20 in shards
    _jpegs(tmp_path / "g" / "train", per_class=10, size=(8, 8))
    _jpegs(tmp_path / "g" / "test", per_class=2, size=(8, 8))
    formats.write_shards(tmp_path / "g", tmp_path / "t", 3)    # train-* and test-* shards: whole shards
    cases = ((5, (0, 1), 4), (1000, (0, 1), 4), (5, (1, 2), 4), (16, (2, 3), 6), (5, (3, 8), 8))
    for path in (tmp_path / "s", tmp_path / "t"):
        x_tr, *_ = stream.scan(path, 0)
        for window, worker, bs in cases:
            fi = dataclasses.replace(x_tr, window=window)
            a = [(int(i), r) for i, r in records.epoch_records(fi, 3, 1, worker, bs).as_numpy_iterator()]
            b = [(int(i), r) for i, rs in records.epoch_batches(fi, 3, 1, worker, bs).as_numpy_iterator() for r in rs]
            assert a == b and len(a) == (len(fi) // bs) * (bs // worker[1]), (path, window, worker)


def test_an_in_memory_run_that_would_not_fit_is_refused_before_loading(tmp_path, invoke, monkeypatch):
    """A .npz (CIFAR archives, IDX alike) loads whole: the check counted one float32 copy, so a run
    passed it and was killed by the kernel. Now the calibrated estimate (about 4 x the prepared
    float32 images + the raw images + the runtime) is refused in one line, nothing written."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.integers(0, 256, (3000, 32, 32, 3), dtype=np.uint8),
             y_train=np.arange(3000) % 10, x_test=rng.integers(0, 256, (300, 32, 32, 3), dtype=np.uint8),
             y_test=np.arange(300) % 10)
    from kerascnn import guard

    monkeypatch.setattr(guard, "resident_bytes", lambda: guard.RUNTIME_PEAK)   # runtime resident: data only
    raw, prepared = 3300 * 32 * 32 * 3, 3000 * 32 * 32 * 3 * 4                # 9.7 MiB raw, 35 MiB float32
    need = int(guard.RAW_COPIES * raw + guard.FLOAT_COPIES * prepared)
    monkeypatch.setenv("KERASCNN_MEMORY_LIMIT", str(need - 1))   # one float32 copy fits 3.8 times over
    r = invoke("train", "mlp", "--data", tmp_path / "d.npz", "--image-size", "32", "--epochs", "1",
               "--run-dir", tmp_path / "run")
    assert r.exit_code == 1, r.output
    err = [ln for ln in r.output.splitlines() if ln.startswith("Error:")]
    assert len(err) == 1 and "in memory this run needs about" in err[0] and "3,000 images at 32x32x3" in err[0], r.output
    assert "Traceback" not in r.output and not (tmp_path / "run").exists()
    assert stream.wants_stream("auto", tmp_path / "d.npz", (16, 16), 3) is False   # a smaller input fits
