"""Issue 13: kerascnn replaces or deletes only what it can prove it wrote; bombs and hostile
inputs are refused in one line before anything big is allocated."""
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
from images import random_folder


def _error_lines(output: str) -> list:
    return [ln for ln in output.splitlines() if ln.startswith("Error:")]


def _one_error(r, code=None):
    assert "Traceback" not in r.output, r.output
    assert len(_error_lines(r.output)) == 1, r.output
    if code is not None:
        assert r.exit_code == code, r.output
    return _error_lines(r.output)[0]


def _dead_pid() -> int:
    """The pid of a process that has exited (reaped), so it is not alive."""
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(p.stdout)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A 3-class 8x8x1 Keras model saved as tiny.keras (no config.json beside it)."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    path = tmp_path_factory.mktemp("tiny") / "tiny.keras"
    model.save(path)
    return path


# --------------------------------------------------------------------------- export --force
def test_export_force_refuses_what_kerascnn_did_not_write(invoke, tiny_model, tmp_path):
    user = tmp_path / "photos"
    user.mkdir()
    (user / "holiday.jpg").write_bytes(b"\xff\xd8 my photo")
    (user / ".hidden.partial-notes").write_text("mine")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "best.keras").write_bytes(b"weights")
    afile = tmp_path / "notes.txt"
    afile.write_text("keep me")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    for target, words in ((user, ("not a kerascnn export", "holiday.jpg")),
                          (run, ("run directory", "best.keras")),
                          (afile, ("is a file",))):
        r = invoke("export", tiny_model, "--out", target, "--force")
        line = _one_error(r, 2)
        assert all(w in line for w in words), line
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # nothing changed, nothing left beside the targets


def test_export_force_replaces_a_previous_export_but_not_one_with_user_files_added(invoke, tiny_model, tmp_path):
    import json

    out = tmp_path / "sm"
    assert invoke("export", tiny_model, "--out", out).exit_code == 0
    meta = json.loads((out / "kerascnn.json").read_text())
    assert meta["format"] == "kerascnn-savedmodel/1"
    pb = (out / "saved_model.pb").stat().st_ino
    r = invoke("export", tiny_model, "--out", out, "--force")
    assert r.exit_code == 0, r.output
    assert (out / "saved_model.pb").stat().st_size > 1000 and (out / "saved_model.pb").stat().st_ino != pb
    (out / "saved_model.pb").write_bytes(b"edited")    # issue 21: a changed file is no longer provably kerascnn's
    r = invoke("export", tiny_model, "--out", out, "--force")
    assert "saved_model.pb, changed since kerascnn wrote it" in _one_error(r, 2)
    assert (out / "saved_model.pb").read_bytes() == b"edited"
    (out / "my_notes.txt").write_text("added by the user")
    r = invoke("export", tiny_model, "--out", out, "--force")
    assert "my_notes.txt" in _one_error(r, 2)
    assert (out / "my_notes.txt").read_text() == "added by the user"


def test_sweep_keeps_partials_of_live_processes_and_foreign_hidden_files(tmp_path):
    from kerascnn import fsutil

    a = fsutil.partial_dir(tmp_path / "sm")       # this process's own staging folders
    b = fsutil.partial_dir(tmp_path / "sm")
    (a / "saved_model.pb").write_text("being written")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        other = tmp_path / f".sm.partial-{sleeper.pid}-0123abcd"   # a concurrent exporter's
        other.mkdir()
        dead = tmp_path / f".sm.partial-{_dead_pid()}-89abcdef"   # left by a killed exporter
        dead.mkdir()
        (dead / "saved_model.pb").write_text("half")
        foreign = [tmp_path / ".thesis.partial-draft", tmp_path / ".x.partial-12-notmine"]
        for f in foreign:
            f.write_text("user file")
        removed = fsutil.sweep_partials(tmp_path)
        assert removed == [dead]
        assert a.is_dir() and b.is_dir() and other.is_dir() and (a / "saved_model.pb").is_file()
        assert all(f.read_text() == "user file" for f in foreign)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_exported_folders_get_normal_permissions(invoke, tiny_model, tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "sm"
        r = invoke("export", tiny_model, "--out", out)
        assert r.exit_code == 0, r.output
    finally:
        os.umask(old)
    modes = {p.relative_to(out).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in [out, *out.rglob("*")]}
    assert modes["."] == 0o755 and modes["variables"] == 0o755 and modes["assets"] == 0o755
    assert modes["saved_model.pb"] == 0o644 and modes["kerascnn.json"] == 0o644
    assert {m for p, m in modes.items() if (out / p).is_dir()} == {0o755}
    assert {m for p, m in modes.items() if (out / p).is_file()} == {0o644}


# --------------------------------------------------------------------------- labels
def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("labels, words", [
    ([0, 1, 0, 1e12], ("not dense", "1,000,000,000,000")),
    ([0, 1, 0, 5e7], ("not dense", "50,000,000", "label 2 is never used")),
    ([0, 1000, 2000, 3000], ("4 distinct labels", "3,000", "relabel them 0..3")),
])
def test_sparse_or_huge_labels_are_refused_before_allocating(tmp_path, labels, words):
    import tracemalloc

    from kerascnn.data import load_data
    from kerascnn.errors import DataError

    y = np.array(labels * 10, dtype=np.float64 if max(labels) > 1e6 else np.int64)
    f = _npz(tmp_path / "d.npz", x_train=np.zeros((len(y), 4, 4), np.uint8), y_train=y)
    tracemalloc.start()
    with pytest.raises(DataError) as e:
        load_data(data=str(f))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert all(w in str(e.value) for w in words), str(e.value)
    assert str(f) in str(e.value) and peak < 2 << 20  # nothing proportional to the label value


def test_sparse_labels_with_class_names_are_accepted(tmp_path):
    from kerascnn.data import load_data

    y = np.array([0, 2, 3, 0, 2, 3] * 5)
    names = np.array(["cat", "dog", "eel", "fox"])
    f = _npz(tmp_path / "d.npz", x_train=np.zeros((30, 4, 4), np.uint8), y_train=y, class_names=names)
    d = load_data(data=str(f))
    assert d.num_classes == 4 and d.class_names == ["cat", "dog", "eel", "fox"]


# --------------------------------------------------------------------------- npz and image bombs
def _npz_bomb(path, n_bytes):
    """An honest .npz whose x_train (zeros) is n_bytes decompressed: a thousandfold smaller on disk."""
    import zipfile

    side = 32
    n = n_bytes // (side * side)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("x_train.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_1_0(fh, {"descr": "|u1", "fortran_order": False,
                                                      "shape": (n, side, side)})
            chunk = bytes(1 << 20)
            for _ in range(n * side * side // len(chunk)):
                fh.write(chunk)
        with zf.open("y_train.npy", "w") as fh:
            np.lib.format.write_array(fh, np.zeros(n, np.int64))
    return path


def test_npz_bomb_is_refused_from_its_headers(tmp_path, monkeypatch):
    import tracemalloc

    from kerascnn.data import load_data
    from kerascnn.errors import DataError

    f = _npz_bomb(tmp_path / "bomb.npz", 256 << 20)  # 256 MiB of images
    assert f.stat().st_size < 1 << 20                  # in under 1 MiB on disk
    monkeypatch.setenv("KERASCNN_MEMORY_LIMIT", "64M")
    tracemalloc.start()
    with pytest.raises(DataError) as e:
        load_data(data=str(f))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    msg = str(e.value)
    assert str(f) in msg and "expand to 258.00 MiB" in msg and "64.00 MiB" in msg, msg
    assert peak < 4 << 20, peak  # the arrays were never decompressed


def test_zero_d_arrays_in_npz_are_one_line(invoke, tmp_path):
    f = _npz(tmp_path / "scalar.npz", x_train=np.array(7), y_train=np.array(1))
    r = invoke("train", "convnet", "--data", f, "--epochs", "1", "--run-dir", tmp_path / "run")
    line = _one_error(r, 1)
    assert "x_train is a 0-d array" in line and str(f) in line


def _png_bomb(path, width, height):
    """A PNG whose header claims width x height gray pixels (decoding would need w*h bytes)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    row = zlib.compress(b"\0" * (width + 1) * 4)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", row) + chunk(b"IEND", b""))
    return path


def test_image_decompression_bomb_is_refused_from_its_header(tmp_path):
    import tracemalloc

    from kerascnn.data import load_data, load_image_files
    from kerascnn.errors import DataError

    root = random_folder(tmp_path / "imgs")
    bomb = _png_bomb(root / "a" / "zz.png", 40_000, 40_000)  # 1.6 G pixels, 235 bytes on disk
    assert bomb.stat().st_size < 300
    tracemalloc.start()
    with pytest.raises(DataError) as e1:
        load_data(data=str(root))
    with pytest.raises(DataError) as e2:
        load_image_files([bomb], (16, 16), 1)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    for e in (e1, e2):
        assert str(bomb) in str(e.value) and "40,000x40,000" in str(e.value) and "before decoding" in str(e.value)
    assert peak < 8 << 20


def test_image_size_600_is_refused_by_an_estimate_before_allocating(invoke, tmp_path, monkeypatch):
    monkeypatch.setenv("KERASCNN_MEMORY_LIMIT", "1G")
    r = invoke("train", "convnet", "--image-size", "600", "--epochs", "1", "--run-dir", tmp_path / "run")
    line = _one_error(r, 1)
    # 1,294 digits training images at 600x600x1 float32 = 1,294 * 360,000 * 4 B = 1.74 GiB > 1 GiB
    assert "1,294 images at 600x600x1 in float32 need 1.74 GiB" in line, line
    assert "1.00 GiB" in line and "--image-size" in line, line


# --------------------------------------------------------------------------- YAML alias bomb, unbounded messages
BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_yaml_alias_bomb_is_refused_without_expanding(tmp_path):
    import tracemalloc

    from kerascnn.errors import ConfigError
    from kerascnn.training.merge import load_config_file

    f = tmp_path / "bomb.yaml"
    f.write_text(BILLION_LAUGHS)
    assert len(BILLION_LAUGHS) < 600
    tracemalloc.start()
    with pytest.raises(ConfigError) as e:
        load_config_file(f)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert "anchors and aliases" in str(e.value) and peak < 4 << 20


def test_messages_never_format_unbounded_values(invoke, tmp_path):
    import json

    f = tmp_path / "big.json"
    f.write_text(json.dumps({"model": "convnet", "x" * 200_000: 1}))
    r = invoke("train", "--config", f)
    line = _one_error(r, 2)
    assert "unknown option 'xxxxx" in line and len(line) < 450
    f = tmp_path / "big.yaml"
    f.write_text("model: convnet\nepochs: [" + ",".join(["1"] * 50_000) + "]\n")
    r = invoke("train", "--config", f)
    line = _one_error(r, 2)
    assert "epochs must be an integer" in line and "50,000 items" in line and len(line) < 300
    r = invoke("train", "convnet", "--epochs", "9" * 5000)
    assert r.exit_code == 2 and "Traceback" not in r.output and len(r.output) < 2000, r.output[:300]


# --------------------------------------------------------------------------- valid input that used to fail
def test_gray_folder_with_one_rgb_image_of_another_size_loads(tmp_path):
    import warnings

    from PIL import Image

    from kerascnn.data import DataWarning, load_data

    root = random_folder(tmp_path / "imgs")
    Image.new("RGB", (20, 20), (200, 100, 50)).save(root / "b" / "rgb.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = load_data(data=str(root), seed=0)
    assert d.image_shape == (16, 16, 1) and len(d.y_train) + len(d.y_test) == 11
    x = np.concatenate([d.x_train, d.x_test])
    assert any(np.all(im == 124) for im in x)  # 0.299*200 + 0.587*100 + 0.114*50 = 124.2
    notes = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert notes == ["11 images of mixed modes/sizes: 1 converted to gray, 1 resized to 16x16 (the most common)"]


def test_one_pixel_scale_per_data_set(tmp_path):
    from kerascnn.data import load_data
    from kerascnn.errors import DataError

    rng = np.random.default_rng(0)
    y = np.arange(20) % 2
    f = _npz(tmp_path / "mixed.npz", x_train=rng.random((20, 4, 4), np.float32), y_train=y,
             x_test=rng.random((20, 4, 4), np.float32) * 255, y_test=y)
    with pytest.raises(DataError, match=r"x_train pixels are in \[0, 1\] but x_test pixels go up to 25\d\.\d+"):
        load_data(data=str(f))
    f = _npz(tmp_path / "same.npz", x_train=rng.random((20, 4, 4), np.float32), y_train=y,
             x_test=rng.random((20, 4, 4), np.float32), y_test=y)
    assert load_data(data=str(f)).pixel_scale == 1.0


@pytest.fixture(scope="module")
def foreign_models(tmp_path_factory):
    import keras

    root = tmp_path_factory.mktemp("foreign")
    made = {}
    m = keras.Sequential([keras.Input((None, None, 3)), keras.layers.GlobalAveragePooling2D(),
                          keras.layers.Dense(2)])
    made["no fixed image size"] = m
    made["not images (None, H, W, C)"] = keras.Sequential([keras.Input((784,)), keras.layers.Dense(2)])
    a, b = keras.Input((8, 8, 1)), keras.Input((8, 8, 1))
    made["takes 2 inputs"] = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Flatten()(a + b)))
    made["not one score per class"] = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 1)])
    paths = {}
    for i, (words, model) in enumerate(made.items()):
        paths[words] = root / f"foreign{i}.keras"
        model.save(paths[words])
    return paths


def test_foreign_keras_models_are_one_line_each(invoke, foreign_models, tmp_path):
    img = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(img)
    for words, path in foreign_models.items():
        r = invoke("predict", path, img)
        line = _one_error(r, 1)
        assert str(path) in line and words in line, line


def test_binary_history_csv_is_one_line(tmp_path):
    from kerascnn.errors import DataError
    from kerascnn.plots import read_history

    f = tmp_path / "history.csv"
    f.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DataError, match=r"history.csv: not a readable history.csv \(binary"):
        read_history(f)
    f.write_bytes(b"epoch,loss\n1,0.5\x00\n")
    with pytest.raises(DataError, match="NUL"):
        read_history(f)
    f.write_text("epoch,loss,accuracy\n1,0.5,0.8\n2,0.25,0.9\n")
    assert read_history(f) == {"epoch": [1.0, 2.0], "loss": [0.5, 0.25], "accuracy": [0.8, 0.9]}


def test_predict_dev_zero_is_one_line(invoke, tiny_model):
    r = invoke("predict", tiny_model, "/dev/zero")
    line = _one_error(r, 1)
    assert "/dev/zero: not a regular file" in line


# --------------------------------------------------------------------------- SIGTERM
def test_sigterm_stops_with_one_line_and_cleans_up(invoke, tiny_model, tmp_path):
    """A real concurrent export into the same parent keeps the paused one's staging folder; then
    SIGTERM stops the paused one with one line, exit 143, and its staging folder removed."""
    import signal

    from conftest import staged_export, start_kerascnn, wait_until

    out = tmp_path / "sm"
    proc = start_kerascnn("export", tiny_model, "--out", out, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert wait_until(proc, lambda: staged_export(out)), "the export never staged its SavedModel"
        proc.send_signal(signal.SIGSTOP)              # paused from outside, before its rename
        staged = [p for p in tmp_path.iterdir() if p.name.startswith(".sm.partial-")]
        assert len(staged) == 1 and (staged[0] / "saved_model.pb").is_file()  # staged, not committed
        r = invoke("export", tiny_model, "--out", tmp_path / "other")  # sweeps the same parent
        assert r.exit_code == 0, r.output
        assert staged[0].is_dir() and (staged[0] / "saved_model.pb").is_file()
        proc.send_signal(signal.SIGTERM)              # delivered as it continues
        proc.send_signal(signal.SIGCONT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert [ln for ln in err.splitlines() if ln.startswith("Error:")] == ["Error: stopped (SIGTERM)"], err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other"]  # staging removed, no target




def test_one_partial_naming_and_one_sweep_for_staging_folders_and_run_files(tmp_path):
    from kerascnn import fsutil
    from kerascnn.training.rundir import sweep_own_partials

    dead = _dead_pid()
    with fsutil.atomic_path(tmp_path / "best.keras") as tmp:     # the names the writers give ...
        file_name = tmp.name
        tmp.write_text("model")
    stage = fsutil.partial_dir(tmp_path / "sm")
    for name in (file_name, stage.name):                          # ... are the names the sweep knows
        assert fsutil._partial_owner(name) == (True, os.getpid())
    dead_file = tmp_path / file_name.replace(f"-{os.getpid()}-", f"-{dead}-")
    dead_file.write_text("left by a killed writer")
    link = tmp_path / f".sm.partial-{dead}-0123abcd"
    link.symlink_to(stage)                                        # never ours: a link is left alone
    assert fsutil.sweep_partials(tmp_path) == [dead_file] and stage.is_dir() and link.is_symlink()
    # a run directory (held by this process): its own leftovers go, other stems stay
    (tmp_path / file_name).write_text("this process's failed write")
    (tmp_path / f".notes.partial-{dead}-0123abcdq1w2e3r4.txt").write_text("user")
    assert sweep_own_partials(tmp_path) == [tmp_path / file_name]
    assert stage.is_dir() and (tmp_path / f".notes.partial-{dead}-0123abcdq1w2e3r4.txt").exists()
