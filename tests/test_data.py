"""Data layer: built-in digits, .npz files, class folders, validation errors, preprocessing,
seeded splits and the (seed, epoch)-determined epoch order. Tiny data, no network."""
import numpy as np
import pytest

from images import random_folder, random_image

from kerascnn import data as D
from kerascnn.errors import ConfigError, DataError


# --------------------------------------------------------------------------- helpers
def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def _good_arrays(n_tr=40, n_te=20, shape=(6, 5), k=4, dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    hi = 256 if dtype == np.uint8 else 1.0

    def imgs(n):
        return (rng.integers(0, 256, (n,) + shape).astype(dtype) if dtype == np.uint8
                else rng.random((n,) + shape).astype(dtype) * hi)

    return dict(x_train=imgs(n_tr), y_train=np.arange(n_tr) % k, x_test=imgs(n_te), y_test=np.arange(n_te) % k)


def _folder(root, classes=("cat", "dog"), per_class=5):
    """Class folders of random 8x8 gray PNGs named 0.png, 1.png, ..."""
    return random_folder(root, classes, per_class, size=(8, 8))


# --------------------------------------------------------------------------- digits
def test_digits_counts_shapes_and_fixed_split():
    d = D.load_data("digits")
    assert d.name == "digits"
    assert len(d.x_train) + len(d.x_test) == 1797
    assert (len(d.x_train), len(d.x_test)) == (1438, 359)
    assert d.x_train.shape[1:] == (8, 8, 1) and d.x_train.dtype == np.uint8
    assert d.x_train.max() == 255 and d.x_train.min() == 0
    assert d.class_names == [str(i) for i in range(10)] and d.num_classes == 10
    assert d.pixel_scale == pytest.approx(1 / 255)
    assert d.y_train.dtype == np.int64
    # stratified: every digit's test share is close to 20%
    share = np.bincount(d.y_test, minlength=10) / np.bincount(np.concatenate([d.y_train, d.y_test]))
    assert share.min() > 0.17 and share.max() < 0.23
    # fixed: the test split does not depend on the training seed
    d2 = D.load_data("digits", seed=99)
    assert np.array_equal(d.y_test, d2.y_test) and np.array_equal(d.x_test, d2.x_test)


def test_unknown_dataset_is_config_error():
    with pytest.raises(ConfigError, match="unknown dataset"):
        D.load_data("imagenet")


def test_keras_dataset_offline_names_cache_and_data_option(tmp_path, monkeypatch):
    import keras.src.datasets.mnist as mnist_mod

    def no_network(*a, **k):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3]")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty_keras"))
    monkeypatch.setattr(mnist_mod, "get_file", no_network)
    with pytest.raises(DataError) as e:
        D.load_data("mnist")
    msg = str(e.value)
    assert "\n" not in msg
    assert str(tmp_path / "empty_keras" / "datasets") in msg
    assert "--data FILE.npz" in msg


def test_keras_dataset_class_names(monkeypatch):
    import keras

    def fake(n_classes):
        def load_data():
            y = np.arange(30) % n_classes
            x = np.zeros((30, 4, 4, 3), np.uint8)
            return (x, y.reshape(-1, 1)), (x[:10], y[:10].reshape(-1, 1))
        return load_data

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", fake(10))
    d = D.load_data("cifar10")
    assert d.class_names[0] == "airplane" and d.class_names[9] == "truck"
    assert d.y_train.shape == (30,)  # (N, 1) labels flattened
    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", fake(10))
    assert D.load_data("fashion_mnist").class_names[9] == "Ankle boot"


# --------------------------------------------------------------------------- npz
@pytest.mark.parametrize("shape", [(6, 5), (6, 5, 1), (6, 5, 3)])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_npz_round_trip(tmp_path, shape, dtype):
    arrays = _good_arrays(shape=shape, dtype=dtype)
    d = D.load_data(data=str(_npz(tmp_path / "x.npz", **arrays)))
    c = shape[2] if len(shape) == 3 else 1
    assert d.x_train.shape == (40, 6, 5, c) and d.x_test.shape == (20, 6, 5, c)
    assert d.num_classes == 4 and d.class_names == ["0", "1", "2", "3"]
    assert np.array_equal(d.y_test, arrays["y_test"])
    assert np.allclose(d.x_train.reshape(arrays["x_train"].shape), arrays["x_train"])
    assert d.pixel_scale == pytest.approx(1 / 255 if dtype == np.uint8 else 1.0)
    assert d.name.startswith("file:")


def test_npz_float_0_255_gets_1_over_255(tmp_path):
    a = _good_arrays()
    a["x_train"] = a["x_train"].astype(np.float64)
    a["x_test"] = a["x_test"].astype(np.float64)
    assert D.load_data(data=str(_npz(tmp_path / "f.npz", **a))).pixel_scale == pytest.approx(1 / 255)


def test_npz_without_test_split_holds_out_20_percent(tmp_path):
    a = _good_arrays(n_tr=50)
    d = D.load_data(data=str(_npz(tmp_path / "t.npz", x_train=a["x_train"], y_train=a["y_train"])))
    assert (len(d.x_train), len(d.x_test)) == (40, 10)


def _bad(tmp_path, name="bad.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


BAD_NPZ = {
    "wrong names": (lambda a: {"images": a["x_train"], "labels": a["y_train"]}, "found images, labels"),
    "x_test without y_test": (lambda a: {k: a[k] for k in ("x_train", "y_train", "x_test")}, "no y_test"),
    "wrong ndim": (lambda a: {**a, "x_train": a["x_train"].reshape(40, -1)}, "has shape (40, 30)"),
    "five channels": (lambda a: {**a, "x_train": np.zeros((40, 6, 5, 5), np.uint8)}, "has shape"),
    "length mismatch": (lambda a: {**a, "y_train": a["y_train"][:-3]}, "40 images but y_train has 37"),
    "float labels": (lambda a: {**a, "y_train": a["y_train"] + 0.5}, "non-integer labels"),
    "negative label": (lambda a: {**a, "y_test": a["y_test"] - 1}, "label -1"),
    "label too large": (lambda a: {**a, "class_names": np.array(["a", "b", "c"])}, "outside [0, 3)"),
    "one class": (lambda a: {**a, "y_train": np.zeros(40, np.int64), "y_test": np.zeros(20, np.int64)},
                  "fewer than two classes"),
    "2-d labels": (lambda a: {**a, "y_train": np.zeros((40, 2), np.int64)}, "one integer label per image"),
    "test size differs": (lambda a: {**a, "x_test": np.zeros((20, 7, 5), np.uint8)}, "x_test images are"),
    "empty": (lambda a: {**a, "x_test": a["x_test"][:0], "y_test": a["y_test"][:0]}, "x_test is empty"),
    "pixels out of range": (lambda a: {**a, "x_train": a["x_train"].astype(np.int32) + 300}, "outside 0..255"),
    "nan pixels": (lambda a: {**a, "x_train": np.full((40, 6, 5), np.nan, np.float32)}, "NaN"),
    "string labels": (lambda a: {**a, "y_train": np.array(["a"] * 40)}, "expected integer class labels"),
}


@pytest.mark.parametrize("case", sorted(BAD_NPZ))
def test_bad_npz_is_one_line_naming_the_file(tmp_path, case):
    make, expected = BAD_NPZ[case]
    path = _bad(tmp_path, **make(_good_arrays()))
    with pytest.raises(DataError) as e:
        D.load_data(data=str(path))
    msg = str(e.value)
    assert str(path) in msg and expected in msg and "\n" not in msg


def test_npz_file_level_problems(tmp_path):
    zero = tmp_path / "zero.npz"
    zero.write_bytes(b"")
    notzip = tmp_path / "notzip.npz"
    notzip.write_text("hello, I am text")
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, x_train=np.array([{"a": 1}] * 4, dtype=object), y_train=np.arange(4))
    for path, expected in ((zero, "empty file"), (notzip, "not a readable .npz"), (pickled, "pickled"),
                           (tmp_path / "missing.npz", "no such file")):
        with pytest.raises(DataError) as e:
            D.load_data(data=str(path))
        assert str(path) in str(e.value) and expected in str(e.value), str(e.value)
    other = tmp_path / "data.json"
    other.write_text("1,2,3")
    with pytest.raises(DataError, match="expected a .npz file, a directory"):
        D.load_data(data=str(other))
    manifest = tmp_path / "data.csv"  # .csv is a manifest (kerascnn/data/formats.py): path,label lines
    manifest.write_text("1,2,3")
    with pytest.raises(DataError, match="data.csv:1: 1: no such image file"):
        D.load_data(data=str(manifest))


def test_num_classes_too_small_for_labels(tmp_path):
    path = _npz(tmp_path / "x.npz", **_good_arrays(k=4))
    with pytest.raises(DataError, match="3 classes"):
        D.load_data(data=str(path), num_classes=3)


# --------------------------------------------------------------------------- class folders
def test_folder_holdout_classes_and_sizes(tmp_path):
    root = _folder(tmp_path / "imgs", classes=("zebra", "ant", "bee"), per_class=10)
    d = D.load_data(data=str(root))
    assert d.class_names == ["ant", "bee", "zebra"]
    assert (len(d.x_train), len(d.x_test)) == (24, 6)
    assert sorted(np.bincount(d.y_test)) == [2, 2, 2]  # stratified hold-out
    assert d.x_train.shape[1:] == (8, 8, 1) and d.x_train.dtype == np.uint8
    assert d.name == f"dir:{root}"
    # the same seed gives the same split, another seed another one
    again = D.load_data(data=str(root))
    assert np.array_equal(again.x_test, d.x_test)
    assert not np.array_equal(D.load_data(data=str(root), seed=5).x_test, d.x_test)


def test_folder_pixels_round_trip(tmp_path):
    a = random_image(tmp_path / "r" / "a" / "0.png", value=7)
    random_image(tmp_path / "r" / "b" / "0.png", value=200)
    random_image(tmp_path / "r" / "a" / "1.png", value=7)
    random_image(tmp_path / "r" / "b" / "1.png", value=200)
    d = D.load_data(data=str(tmp_path / "r" / ""))
    x = np.concatenate([d.x_train, d.x_test])
    y = np.concatenate([d.y_train, d.y_test])
    assert np.all(x[y == 0] == a[0, 0]) and np.all(x[y == 1] == 200)


def test_folder_with_train_and_test_subfolders(tmp_path):
    _folder(tmp_path / "r" / "train", per_class=4)
    _folder(tmp_path / "r" / "test", per_class=2)
    d = D.load_data(data=str(tmp_path / "r"))
    assert (len(d.x_train), len(d.x_test)) == (8, 4) and d.class_names == ["cat", "dog"]
    (tmp_path / "r" / "test" / "dog").rename(tmp_path / "r" / "test" / "wolf")
    with pytest.raises(DataError, match="different class folders"):
        D.load_data(data=str(tmp_path / "r"))


def test_folder_mixed_channels_and_sizes_take_the_majority(tmp_path):
    root = tmp_path / "r"
    for i in range(3):
        random_image(root / "a" / f"{i}.png", size=(10, 6), mode="RGB", seed=i)
        random_image(root / "b" / f"{i}.png", size=(10, 6), mode="RGB", seed=10 + i)
    random_image(root / "a" / "gray.png", size=(10, 6), mode="L")
    random_image(root / "b" / "big.png", size=(20, 12), mode="RGB")
    from PIL import Image

    Image.fromarray(np.zeros((6, 10), np.uint8), "L").convert("P").save(root / "b" / "pal.gif")
    d = D.load_data(data=str(root))
    assert d.x_train.shape[1:] == (6, 10, 3)
    assert len(d.x_train) + len(d.x_test) == 9


def _corrupt_png(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 10)


def _truncated_png(path):
    random_image(path, size=(32, 32))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _truncated_jpeg(path):
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


BAD_FOLDER = {
    "corrupt png": (lambda r: _corrupt_png(r / "dog" / "bad.png"), "bad.png", "not a readable image"),
    "zero-byte jpg": (lambda r: (r / "dog" / "empty.jpg").write_bytes(b""), "empty.jpg", "0 bytes"),
    "truncated png": (lambda r: _truncated_png(r / "cat" / "half.png"), "half.png", "not a readable image"),
    "text named png": (lambda r: (r / "cat" / "notes.png").write_text("hello"), "notes.png", "not a readable image"),
    "truncated jpeg": (lambda r: _truncated_jpeg(r / "cat" / "cut.jpg"), "cut.jpg", "not a readable image"),
    "empty class dir": (lambda r: (r / "emu").mkdir(), "emu", "empty class folder"),
}


@pytest.mark.parametrize("case", sorted(BAD_FOLDER))
def test_bad_folder_names_the_file(tmp_path, case):
    root = _folder(tmp_path / "r")
    make, fname, expected = BAD_FOLDER[case]
    make(root)
    with pytest.raises(DataError) as e:
        D.load_data(data=str(root))
    msg = str(e.value)
    assert fname in msg and expected in msg and "\n" not in msg, msg


def test_folder_structure_errors(tmp_path):
    single = _folder(tmp_path / "single", classes=("only",))
    with pytest.raises(DataError, match="only one class folder"):
        D.load_data(data=str(single))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        D.load_data(data=str(tmp_path / "empty"))
    with pytest.raises(DataError, match="no such file or directory"):
        D.load_data(data=str(tmp_path / "nowhere"))
    text_only = _folder(tmp_path / "t")
    for f in (text_only / "dog").iterdir():
        f.unlink()
    (text_only / "dog" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="empty class folder"), pytest.warns(UserWarning, match="readme.txt"):
        D.load_data(data=str(text_only))


def test_non_image_files_are_skipped_with_a_warning(tmp_path):
    root = _folder(tmp_path / "r")
    (root / "cat" / "labels.txt").write_text("not an image")
    with pytest.warns(UserWarning, match="labels.txt"):
        d = D.load_data(data=str(root))
    assert len(d.x_train) + len(d.x_test) == 10


def test_load_image_files(tmp_path):
    random_image(tmp_path / "p" / "b.png", size=(8, 8), mode="RGB")
    random_image(tmp_path / "p" / "a.png", size=(16, 12), mode="L", value=255)
    (tmp_path / "p" / "notes.txt").write_text("skip me")
    x, names = D.load_image_files([str(tmp_path / "p")], (28, 28), 1, 1 / 255)
    assert names == [str(tmp_path / "p" / "a.png"), str(tmp_path / "p" / "b.png")]
    assert x.shape == (2, 28, 28, 1) and x.dtype == np.float32
    assert np.allclose(x[0], 1.0, atol=1e-5)
    _corrupt_png(tmp_path / "bad.png")
    with pytest.raises(DataError, match="bad.png"):
        D.load_image_files([str(tmp_path / "bad.png")], (8, 8), 1, 1 / 255)


def test_folder_that_would_not_fit_twice_is_refused_before_decoding(tmp_path, monkeypatch):
    root = _folder(tmp_path / "r")                      # 10 gray 8x8 PNGs: 640 bytes decoded
    monkeypatch.setenv("KERASCNN_MEMORY_LIMIT", str(2 * 640 - 1))   # decoded, then stacked: 1,280 bytes
    with pytest.raises(DataError, match="10 images decoded and stacked in memory need .*--stream on"):
        D.load_data(data=str(root))
    monkeypatch.setenv("KERASCNN_MEMORY_LIMIT", str(2 * 640))
    assert len(D.load_data(data=str(root)).x_train) == 8


def test_iter_image_batches_bounded_same_order_and_values(tmp_path, monkeypatch):
    for i in range(7):
        random_image(tmp_path / "p" / f"{i}.png", size=(8 + i, 8), mode="RGB" if i % 2 else "L", value=30 * i)
    whole, names = D.load_image_files([str(tmp_path / "p")], (12, 12), 3, 1 / 255)
    # each image prepared from its own size as prepare_images prepares it alone (decoded in parallel,
    # converted in TF: the luminance's 3 terms summed in another order at most, a few ulps of 1.0)
    from pathlib import Path

    alone = [D.prepare_images(D._read_image(Path(f))[None], (12, 12), 3, 1 / 255) for f in names]
    np.testing.assert_allclose(whole, np.concatenate(alone), rtol=0, atol=4 * np.finfo(np.float32).eps)
    parts = list(D.iter_image_batches([str(tmp_path / "p")], (12, 12), 3, 1 / 255, batch=3))
    assert [len(f) for _, f in parts] == [3, 3, 1] and sum((f for _, f in parts), []) == names
    np.testing.assert_array_equal(np.concatenate([x for x, _ in parts]), whole)
    # memory bounded by a few batches: 48 palette PNGs (decoded through PIL, counted), batch 2
    from kerascnn.data import images

    for i in range(48):
        random_image(tmp_path / "q" / f"{i:02d}.png", size=(8 + i % 3, 8), mode="P", value=i)
    reads = []
    real = images._read_image
    monkeypatch.setattr(images, "_read_image", lambda f, have=None: reads.append(f) or real(f, have))
    it = D.iter_image_batches([str(tmp_path / "q")], (12, 12), 1, 1 / 255, batch=2)
    x0, f0 = next(it)
    import time

    time.sleep(0.5)   # let the reader run ahead as far as it goes
    assert x0.shape == (2, 12, 12, 1) and len(reads) <= 3 * 2 + 8 < 48   # never the folder
    assert [f0] + [f for _, f in it] == [[str(tmp_path / "q" / f"{i:02d}.png") for i in (j, j + 1)]
                                         for j in range(0, 48, 2)]
    assert len(reads) == 48
    _corrupt_png(tmp_path / "p" / "9.png")   # sorted last: still named before the first batch
    reads.clear()
    with pytest.raises(DataError, match="9.png: not a readable image"):
        next(D.iter_image_batches([str(tmp_path / "p")], (12, 12), 3, 1 / 255, batch=3))
    assert reads == []


# --------------------------------------------------------------------------- preparing
def test_prepare_images_resize_channels_scale():
    x = np.full((3, 8, 8, 1), 255, np.uint8)
    out = D.prepare_images(x, (28, 28), 3, 1 / 255)
    assert out.shape == (3, 28, 28, 3) and out.dtype == np.float32
    assert np.allclose(out, 1.0, atol=1e-5)
    rgb = np.zeros((2, 4, 4, 3), np.uint8)
    rgb[..., 0] = 255  # pure red -> luminance 0.299
    gray = D.prepare_images(rgb, 4, 1, 1 / 255)
    assert gray.shape == (2, 4, 4, 1) and np.allclose(gray, 0.299, atol=1e-3)
    same = D.prepare_images(np.arange(16, dtype=np.float32).reshape(1, 4, 4), (4, 4), 1, 1.0)
    assert same.shape == (1, 4, 4, 1) and np.array_equal(same[0, ..., 0], np.arange(16).reshape(4, 4))
    small = D.prepare_images(np.zeros((5000, 8, 8, 1), np.uint8), (4, 4), 1, 1 / 255, chunk=1024)
    assert small.shape == (5000, 4, 4, 1)


# --------------------------------------------------------------------------- splits and epochs
def test_split_validation_seeded_and_stratified():
    y = np.repeat(np.arange(5), 20)
    x = np.arange(100)
    a = D.split_validation(x, y, 0.2, seed=3)
    b = D.split_validation(x, y, 0.2, seed=3)
    c = D.split_validation(x, y, 0.2, seed=4)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not np.array_equal(a[2], c[2])
    assert len(a[0]) == 80 and len(a[2]) == 20
    assert np.array_equal(np.bincount(a[3]), [4] * 5)  # stratified
    assert set(a[0]).isdisjoint(a[2]) and set(a[0]) | set(a[2]) == set(range(100))
    # no validation
    x0, y0, xv, yv = D.split_validation(x, y, 0.0, seed=0)
    assert len(x0) == 100 and len(xv) == 0
    # a class with one sample: falls back to an unstratified seeded split
    y1 = np.array([0] * 10 + [1] * 9 + [2])
    assert len(D.split_validation(np.arange(20), y1, 0.25, 0)[2]) == 5
    with pytest.raises(ConfigError):
        D.split_validation(x, y, 1.0, 0)


def test_epoch_order_is_a_function_of_seed_and_epoch():
    x = np.arange(50, dtype=np.float32).reshape(50, 1, 1, 1)
    y = np.arange(50)

    def epoch_labels(seed, first, epochs):
        got = np.concatenate([b[1].numpy() for b in D.train_dataset(x, y, 8, seed, first, epochs)])
        return got.reshape(epochs - first, 48)   # 6 full batches of 8 per epoch, the remainder dropped

    e0, e1, e2 = epoch_labels(1, 0, 3)
    assert np.array_equal(e0, epoch_labels(1, 0, 1)[0])
    assert np.array_equal(e2, epoch_labels(1, 2, 3)[0])      # a resumed stream starts where it left off
    assert not np.array_equal(e0, e1) and not np.array_equal(e1, e2)
    assert not np.array_equal(e0, epoch_labels(2, 0, 1)[0])
    assert len(set(e0)) == 48
    assert np.array_equal(e0, D.epoch_order(50, 1, 0).numpy()[:48])
    assert sorted(D.epoch_order(50, 1, 0).numpy()) == list(range(50))
    batches = list(D.train_dataset(x, y, 8, 1, 0, 1))
    assert len(batches) == 6 and batches[0][0].dtype.name == "float32" and batches[0][1].dtype.name == "int64"
    for xb, yb in batches:   # images follow their labels
        assert xb.shape == (8, 1, 1, 1) and np.array_equal(xb.numpy().reshape(-1), yb.numpy())
    with pytest.raises(ConfigError, match="larger than the 50 training images"):
        D.train_dataset(x, y, 64, 1, 0, 1)


def test_augment_is_deterministic_per_epoch_and_keeps_labels():
    rng = np.random.default_rng(0)
    x = rng.random((24, 16, 16, 3)).astype(np.float32)
    y = np.arange(24)

    def run(epoch):
        out = list(D.train_dataset(x, y, 8, 7, epoch, epoch + 1, augment=True))
        return np.concatenate([b[0].numpy() for b in out]), np.concatenate([b[1].numpy() for b in out])

    a, la = run(0)
    b, lb = run(0)
    c, lc = run(1)
    assert a.shape == (24, 16, 16, 3) and a.dtype == np.float32
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    assert not np.array_equal(a, c[np.argsort(lc)][la])
    assert not np.array_equal(a, x[la])  # something was cropped or flipped
    # every augmented image is a shifted (and maybe flipped) window of the reflected original
    pad = 2
    for img, lab in zip(a, la):
        src = np.pad(x[lab], [(pad, pad), (pad, pad), (0, 0)], mode="reflect")
        ok = any(np.allclose(img, cand[i:i + 16, j:j + 16]) for cand in (src, src[:, ::-1])
                 for i in range(2 * pad + 1) for j in range(2 * pad + 1))
        assert ok


def test_eval_dataset_keeps_order():
    x = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1)
    got = np.concatenate([b[1].numpy() for b in D.eval_dataset(x, np.arange(10), 4)])
    assert np.array_equal(got, np.arange(10))
