"""Formats people have (kerascnn/data/formats.py): tiny files in the official layouts."""
import gzip
import io
import os
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

from kerascnn.data import load_data
from kerascnn.errors import DataError

RNG = np.random.default_rng(0)


def _batch(n, label_key, k, start=0):
    data = RNG.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [(start + i) % k for i in range(n)]
    return {b"batch_label": b"tiny", label_key: labels, b"data": data,
            b"filenames": [f"f{i}.png".encode() for i in range(n)]}


def _tar(path, top, members: dict):
    with tarfile.open(path, "w:gz") as tar:
        for name, obj in members.items():
            raw = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


def _cifar10_members():
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    m = {f"data_batch_{i}": _batch(10, b"labels", 10, i) for i in range(1, 6)}
    m["test_batch"] = _batch(10, b"labels", 10)
    m["batches.meta"] = {b"label_names": names, b"num_cases_per_batch": 10, b"num_vis": 3072}
    return m


def test_cifar10_archive_pixels_labels_and_names(tmp_path):
    members = _cifar10_members()
    d = load_data(data=str(_tar(tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py", members)))
    assert d.x_train.shape == (50, 32, 32, 3) and d.x_test.shape == (10, 32, 32, 3)
    assert d.x_train.dtype == np.uint8 and d.class_names[0] == "airplane" and d.num_classes == 10
    row = members["data_batch_1"][b"data"][3]  # channel-planar: R plane, G plane, B plane, row-major
    for r, c, ch in [(0, 0, 0), (5, 7, 1), (31, 30, 2)]:
        assert d.x_train[3, r, c, ch] == row[ch * 1024 + r * 32 + c]
    np.testing.assert_array_equal(d.y_train[:10], members["data_batch_1"][b"labels"])
    np.testing.assert_array_equal(d.y_train[40:50], members["data_batch_5"][b"labels"])  # batches in numeric order


def test_cifar100_archive_fine_labels(tmp_path):
    fine = [f"c{i}".encode() for i in range(100)]
    members = {"train": _batch(200, b"fine_labels", 100), "test": _batch(100, b"fine_labels", 100),
               "meta": {b"fine_label_names": fine, b"coarse_label_names": [b"x"] * 20}}
    for m in ("train", "test"):
        members[m][b"coarse_labels"] = [0] * len(members[m][b"fine_labels"])
    d = load_data(data=str(_tar(tmp_path / "cifar-100-python.tar.gz", "cifar-100-python", members)))
    assert (len(d.x_train), len(d.x_test), d.num_classes) == (200, 100, 100)
    assert d.class_names[42] == "c42" and int(d.y_train[142]) == 42


def test_extracted_cifar_folder_as_keras_caches_it(tmp_path):
    folder = tmp_path / "cifar-10-batches-py-target" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    members = _cifar10_members()
    for name, obj in members.items():
        (folder / name).write_bytes(pickle.dumps(obj, protocol=2))
    d = load_data(data=str(folder))
    assert d.x_train.shape == (50, 32, 32, 3) and d.class_names[-1] == "truck"
    np.testing.assert_array_equal(d.x_test.transpose(0, 3, 1, 2).reshape(10, 3072), members["test_batch"][b"data"])


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_hostile_pickle_is_refused_without_running_code(tmp_path):
    target = str(tmp_path / "pwned")
    members = _cifar10_members()
    members["data_batch_2"] = {b"data": _Evil(target), b"labels": [0]}
    with pytest.raises(DataError, match=r"data_batch_2: not a CIFAR python batch .*refused global posix.mkdir"):
        load_data(data=str(_tar(tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py", members)))
    assert not os.path.exists(target)


def test_bad_archives_are_one_line(tmp_path):
    bad = tmp_path / "cifar-10-python.tar.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match="not a readable tar.gz archive"):
        load_data(data=str(bad))
    members = _cifar10_members()
    del members["test_batch"]
    with pytest.raises(DataError, match="missing test_batch"):
        load_data(data=str(_tar(tmp_path / "c.tar.gz", "cifar-10-batches-py", members)))
    members = _cifar10_members()
    members["data_batch_1"][b"data"] = members["data_batch_1"][b"data"][:, :100]
    with pytest.raises(DataError, match=r"data_batch_1: 'data' is uint8 \(10, 100\)"):
        load_data(data=str(_tar(tmp_path / "d.tar.gz", "cifar-10-batches-py", members)))


def _idx(path, arr):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.astype(np.uint8).tobytes())


def test_fashion_mnist_idx_cache_folder(tmp_path):
    x_tr = RNG.integers(0, 256, (12, 28, 28))
    x_te = RNG.integers(0, 256, (4, 28, 28))
    y_tr, y_te = np.arange(12) % 3, np.arange(4) % 3
    for name, a in [("train-images-idx3-ubyte", x_tr), ("train-labels-idx1-ubyte", y_tr),
                    ("t10k-images-idx3-ubyte", x_te), ("t10k-labels-idx1-ubyte", y_te)]:
        _idx(tmp_path / f"{name}.gz", a)
    d = load_data(data=str(tmp_path))
    assert d.x_train.shape == (12, 28, 28, 1) and d.num_classes == 3
    np.testing.assert_array_equal(d.x_test[..., 0], x_te)
    np.testing.assert_array_equal(d.y_train, y_tr)


def _images(folder, n_per_class=5, classes=("cat", "dog"), size=(6, 5)):
    """PNG images whose pixels encode (class, index): every image distinct."""
    out = {}
    for k, cls in enumerate(classes):
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            a = np.full(size + (3,), 10 * i, np.uint8)
            a[0, 0] = (k, i, 200)
            a[1:, :, 1] = RNG.integers(0, 256, (size[0] - 1, size[1]))
            Image.fromarray(a).save(folder / cls / f"{i}.png")
            out[f"{cls}/{i}.png"] = (a, k)
    return out


@pytest.mark.parametrize("header,sep,names", [(True, ",", True), (False, " ", False), (False, "\t", True)])
def test_manifest_paths_relative_labels_names_or_ints(tmp_path, header, sep, names):
    imgs = _images(tmp_path / "img")
    labels = {"cat": "cat", "dog": "dog"} if names else {"cat": "1", "dog": "0"}
    lines = (["path,label"] if header else []) + [f"img/{p}{sep}{labels[p.split('/')[0]]}" for p in imgs]
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    d = load_data(data=str(tmp_path / "m.csv"))
    assert len(d.x_train) + len(d.x_test) == 10 and len(d.x_test) == 2
    assert d.class_names == (["cat", "dog"] if names else ["0", "1"])
    for x, y in zip(np.concatenate([d.x_train, d.x_test]), np.concatenate([d.y_train, d.y_test])):
        k, i = int(x[0, 0, 0]), int(x[0, 0, 1])
        assert d.class_names[y] == ("cat" if k == 0 else "dog") if names else int(y) == 1 - k
        np.testing.assert_array_equal(x, imgs[f"{('cat', 'dog')[k]}/{i}.png"][0])


def test_manifest_errors_name_the_line(tmp_path):
    _images(tmp_path / "img")
    (tmp_path / "m.csv").write_text("path,label\nimg/cat/0.png,cat\nimg/cat/nope.png,cat\n")
    with pytest.raises(DataError, match=r"m.csv:3: img/cat/nope.png: no such image file"):
        load_data(data=str(tmp_path / "m.csv"))
    (tmp_path / "m.txt").write_text("img/cat/0.png\n")
    with pytest.raises(DataError, match=r"m.txt:1: expected 'path,label'"):
        load_data(data=str(tmp_path / "m.txt"))


def test_shards_round_trip_and_train_test_split(tmp_path, invoke):
    imgs = {}
    for split, n in (("train", 6), ("test", 2)):
        for p, v in _images(tmp_path / "src" / split, n_per_class=n).items():
            imgs[f"{split}/{p}"] = v
    r = invoke("shards", tmp_path / "src", tmp_path / "out", "--shards", "3")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "test-00000-of-00003.tfrecord", "test-00001-of-00003.tfrecord", "test-00002-of-00003.tfrecord",
        "train-00000-of-00003.tfrecord", "train-00001-of-00003.tfrecord", "train-00002-of-00003.tfrecord"]
    d = load_data(data=str(tmp_path / "out"))
    assert (len(d.x_train), len(d.x_test), d.class_names) == (12, 4, ["cat", "dog"])
    seen = set()
    for split, xs, ys in (("train", d.x_train, d.y_train), ("test", d.x_test, d.y_test)):
        for x, y in zip(xs, ys):
            k, i = int(x[0, 0, 0]), int(x[0, 0, 1])
            key = f"{split}/{('cat', 'dog')[k]}/{i}.png"
            np.testing.assert_array_equal(x, imgs[key][0])  # PNG bytes kept as written: lossless
            assert int(y) == k
            seen.add(key)
    assert seen == set(imgs)
    one = load_data(data=str(tmp_path / "out" / "train-00001-of-00003.tfrecord"))  # one shard: 80/20 split
    assert len(one.x_train) + len(one.x_test) == 4


def test_shards_refuses_nonempty_out_and_leaves_nothing_on_bad_image(tmp_path, invoke):
    _images(tmp_path / "src")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    r = invoke("shards", tmp_path / "src", tmp_path / "busy")
    assert r.exit_code == 2 and "not an empty directory" in r.output
    assert os.listdir(tmp_path / "busy") == ["keep.txt"]
    (tmp_path / "src" / "dog" / "broken.png").write_bytes(b"not a png at all")
    r = invoke("shards", tmp_path / "src", tmp_path / "new")
    assert r.exit_code == 1 and "broken.png: not a readable image" in r.output, r.output
    assert sorted(os.listdir(tmp_path)) == ["busy", "src"]  # no OUT, no staging folder left


def test_corrupt_tfrecord_is_one_line(tmp_path):
    (tmp_path / "train-00000-of-00001.tfrecord").write_bytes(b"\x00" * 40)
    with pytest.raises(DataError, match="train-00000-of-00001.tfrecord: corrupt TFRecord"):
        load_data(data=str(tmp_path / "train-00000-of-00001.tfrecord"))


def test_train_on_a_cifar_archive_cli(tmp_path):
    from conftest import kerascnn_in_process

    archive = _tar(tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py", _cifar10_members())
    r = kerascnn_in_process("train", "convnet", "--data", archive, "--epochs", "1", "--batch-size", "10",
                            "--run-dir", tmp_path / "run", "-q")
    assert r.returncode == 0, r.stderr[-1500:]
    assert (tmp_path / "run").is_dir()
