"""Issue 21, data loss: the run lock never follows a link or truncates what kerascnn did not
create; ``export --force`` replaces atomically and only what kerascnn can prove it wrote."""
import gc
import os
import shutil
import sys

import pytest

from kerascnn.training import rundir


def _error_lines(output: str) -> list:
    return [ln for ln in output.splitlines() if ln.startswith("Error:")]


def _one_error(r, code=None) -> str:
    assert "Traceback" not in r.output and "Exception ignored" not in r.output, r.output
    assert len(_error_lines(r.output)) == 1, r.output
    if code is not None:
        assert r.exit_code == code, r.output
    return _error_lines(r.output)[0]


def _files(root):
    """bytes of every file under root, links not followed."""
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


# --------------------------------------------------------------------------- the run lock
def _hostile_locks(tmp_path):
    """(name, make(lock path), what the refusal says): lock files kerascnn did not make."""
    users = tmp_path / "users-file.txt"
    users.write_text("the user's thesis\n")

    def hard(p):
        os.link(users, p)

    return users, [
        ("link to a user's file", lambda p: p.symlink_to(users), "is a symbolic link"),
        ("dangling link", lambda p: p.symlink_to(tmp_path / "created-by-a-dangling-link"), "is a symbolic link"),
        ("directory", lambda p: p.mkdir(), "is a directory"),
        ("fifo", lambda p: os.mkfifo(p), "is not a regular file"),
        ("hard link to a user's file", hard, "hard links"),
        ("someone else's file", lambda p: p.write_text("my notes, not a pid\n"), "kerascnn did not write"),
    ]


def test_run_lock_is_refused_unless_kerascnn_made_it_and_nothing_is_written(tmp_path):
    users, cases = _hostile_locks(tmp_path)
    for name, make, words in cases:
        run = tmp_path / name.replace(" ", "-").replace("'", "")
        run.mkdir()
        make(run / rundir.LOCK_FILE)
        caught = []
        old_hook, sys.unraisablehook = sys.unraisablehook, caught.append
        try:
            for attempt in (lambda: rundir.claim_new(run), lambda: rundir.lock_existing(run),
                            lambda: rundir.RunLock(run, create_exclusive=True)):
                with pytest.raises(rundir.ConfigError) as e:
                    attempt()
                assert words in str(e.value) and str(run / rundir.LOCK_FILE) in str(e.value), (name, e.value)
                assert "\n" not in str(e.value)
            gc.collect()
        finally:
            sys.unraisablehook = old_hook
        assert caught == [], (name, caught)              # no "Exception ignored in RunLock.__del__"
        assert users.read_text() == "the user's thesis\n", name
        assert not (tmp_path / "created-by-a-dangling-link").exists(), name


def test_a_lock_kerascnn_made_is_taken_and_holds_the_pid(tmp_path):
    run = tmp_path / "run"
    lock = rundir.claim_new(run)
    assert (run / rundir.LOCK_FILE).read_text() == f"{os.getpid()}\n"
    lock.release()
    (run / rundir.LOCK_FILE).write_text("12345\n")        # left by a killed kerascnn process
    again = rundir.lock_existing(run)
    assert (run / rundir.LOCK_FILE).read_text() == f"{os.getpid()}\n"
    again.release()
    (run / rundir.LOCK_FILE).write_text("")               # created, killed before the pid was written
    rundir.claim_new(run).release()


def test_train_refuses_a_linked_lock_in_one_line(tmp_path, invoke, trained_run):
    users, _ = _hostile_locks(tmp_path)
    new = tmp_path / "new"
    new.mkdir()
    (new / rundir.LOCK_FILE).symlink_to(users)
    r = invoke("train", "convnet", "--epochs", "1", "--run-dir", new)
    assert "is a symbolic link" in _one_error(r, 2)
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / rundir.LOCK_FILE).unlink()
    (run / rundir.LOCK_FILE).symlink_to(users)
    before = _files(run)
    r = invoke("train", "--resume", run, "--epochs", "4")
    assert "is a symbolic link" in _one_error(r, 2)
    assert users.read_text() == "the user's thesis\n" and _files(run) == before


# --------------------------------------------------------------------------- export --force
@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    """A kerascnn SavedModel export of a 3-class 8x8x1 model (and the model file)."""
    import keras
    from click.testing import CliRunner

    from kerascnn.cli import cli

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    root = tmp_path_factory.mktemp("exp")
    model.save(root / "tiny.keras")
    r = CliRunner().invoke(cli, ["export", str(root / "tiny.keras"), "--out", str(root / "sm")])
    assert r.exit_code == 0, r.output
    return root / "sm"


def _copy(export_dir, tmp_path, name="sm"):
    dst = tmp_path / name
    shutil.copytree(export_dir, dst)
    return dst


@pytest.mark.parametrize("intrude, words", [
    (lambda sm: (sm / "assets" / "my_labels.txt").write_text("mine"), "assets/my_labels.txt"),
    (lambda sm: (sm / "variables" / "notes").mkdir(), "folder variables/notes"),
    (lambda sm: (sm / "assets" / "deep").mkdir() or (sm / "assets" / "deep" / "x.bin").write_bytes(b"1"),
     "assets/deep"),
    (lambda sm: (sm / "assets" / "link").symlink_to(sm.parent / "elsewhere"), "symbolic link assets/link"),
    (lambda sm: (sm / "assets" / "class_names.json").write_text('["cat", "dog", "my edit"]'),
     "assets/class_names.json, changed since kerascnn wrote it"),
])
def test_export_force_refuses_an_export_the_user_added_to_or_changed(invoke, export_dir, tmp_path, intrude, words):
    sm = _copy(export_dir, tmp_path)
    intrude(sm)
    before = _files(sm)
    r = invoke("export", export_dir.parent / "tiny.keras", "--out", sm, "--force")
    assert words in _one_error(r, 2)
    assert _files(sm) == before and sorted(p.name for p in tmp_path.iterdir()) == ["sm"]


def test_export_marker_lists_every_file_with_size_and_hash(export_dir):
    import hashlib
    import json

    listed = json.loads((export_dir / "kerascnn.json").read_text())["manifest"]
    on_disk = sorted(p.relative_to(export_dir).as_posix() for p in export_dir.rglob("*") if p.is_file())
    assert sorted(listed["files"]) == [f for f in on_disk if f != "kerascnn.json"]
    assert "saved_model.pb" in listed["files"] and "assets/class_names.json" in listed["files"]
    for rel, (size, digest) in listed["files"].items():
        data = (export_dir / rel).read_bytes()
        assert size == len(data) and digest == hashlib.sha256(data).hexdigest()
    assert set(listed["dirs"]) >= {"variables", "assets"}


def test_an_export_written_before_manifests_is_checked_by_name(invoke, export_dir, tmp_path):
    import json

    sm = _copy(export_dir, tmp_path)
    meta = json.loads((sm / "kerascnn.json").read_text())
    del meta["manifest"]
    (sm / "kerascnn.json").write_text(json.dumps(meta))
    (sm / "assets" / "mine.txt").write_text("mine")
    r = invoke("export", export_dir.parent / "tiny.keras", "--out", sm, "--force")
    assert "assets/mine.txt, which kerascnn did not write" in _one_error(r, 2)
    (sm / "assets" / "mine.txt").unlink()
    r = invoke("export", export_dir.parent / "tiny.keras", "--out", sm, "--force")
    assert r.exit_code == 0, r.output
    assert "manifest" in json.loads((sm / "kerascnn.json").read_text())


_CHILD = """
import os, signal, sys
from pathlib import Path
from kerascnn import fsutil
from kerascnn.exporter import not_replaceable
mode, staging, target = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
if mode == "fallback":                      # a platform without renameat2: crash between the two renames
    fsutil.exchange = lambda a, b: False
    real = os.rename
    def rename(a, b):
        real(a, b)
        if b != target:
            die()
    os.rename = rename
else:                                       # crash after the atomic exchange, before the old tree is removed
    fsutil.shutil.rmtree = die
fsutil.commit_dir(staging, target, force=True, replaceable=not_replaceable)
"""


def _new_export(export_dir, tmp_path):
    """A second, different, complete export in a kerascnn staging folder beside tmp_path/sm."""
    import json

    from kerascnn import fsutil
    from kerascnn.exporter import manifest

    import subprocess

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()     # as if written by an exporter that is gone
    staging = tmp_path / fsutil.partial_dir(tmp_path / "sm").name.replace(f"-{os.getpid()}-", f"-{dead}-")
    shutil.rmtree(tmp_path / staging.name.replace(f"-{dead}-", f"-{os.getpid()}-"))
    shutil.copytree(export_dir, staging)
    (staging / "assets" / "class_names.json").write_text('["a", "b", "new"]')
    meta = json.loads((staging / "kerascnn.json").read_text())
    meta["manifest"] = manifest(staging)
    (staging / "kerascnn.json").write_text(json.dumps(meta))
    return staging


def _kill_in_commit(mode, staging, target):
    import subprocess

    r = subprocess.run([sys.executable, "-c", _CHILD, mode, str(staging), str(target)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == -9, r.stderr[-2000:]


def test_export_force_is_atomic_and_a_crash_after_the_exchange_leaves_the_new_export(export_dir, tmp_path, invoke):
    from kerascnn import fsutil

    sm = _copy(export_dir, tmp_path)
    before = _files(sm)
    staging = _new_export(export_dir, tmp_path)
    new = _files(staging)
    _kill_in_commit("exchange", staging, sm)
    assert _files(sm) == new                              # the new export, complete
    assert _files(staging) == before                      # the old one, under the (dead) staging name
    removed = fsutil.sweep_partials(tmp_path)            # what any later export here does first
    assert removed == [staging] and sorted(p.name for p in tmp_path.iterdir()) == ["sm"]


def test_export_force_fallback_crash_between_renames_is_put_back_by_the_next_command(export_dir, tmp_path, invoke):
    sm = _copy(export_dir, tmp_path)
    before = _files(sm)
    staging = _new_export(export_dir, tmp_path)
    _kill_in_commit("fallback", staging, sm)
    assert not sm.exists()                                # the crash window of two renames
    aside = [p.name for p in tmp_path.iterdir() if ".sm.old-" in p.name]
    assert len(aside) == 1
    image = tmp_path / "img.png"
    from PIL import Image
    import numpy as np

    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(image)
    r = invoke("predict", sm, image)                     # the next kerascnn command on the export
    assert r.exit_code == 0, r.output
    assert _files(sm) == before and not any(".sm.old-" in p.name for p in tmp_path.iterdir())


def test_commit_dir_puts_the_old_tree_back_when_a_file_appeared_during_the_swap(export_dir, tmp_path):
    from kerascnn import fsutil

    sm = _copy(export_dir, tmp_path)
    staging = _new_export(export_dir, tmp_path)
    calls = []

    def replaceable(path):       # fine when asked first; a file "appears" before the second look
        calls.append(path)
        if len(calls) == 2:
            (path / "assets" / "late.txt").write_text("added during the swap")
            return f"{path} holds assets/late.txt"
        return None

    for swap in (fsutil.exchange, lambda a, b: False):
        calls.clear()
        real, fsutil.exchange = fsutil.exchange, swap
        try:
            with pytest.raises(PermissionError, match=str(sm)):
                fsutil.commit_dir(staging, sm, force=True, replaceable=replaceable)
        finally:
            fsutil.exchange = real
        assert (sm / "assets" / "late.txt").read_text() == "added during the swap"
        assert (sm / "assets" / "class_names.json").read_text() != '["a", "b", "new"]'
        assert (staging / "assets" / "class_names.json").read_text() == '["a", "b", "new"]'
        (sm / "assets" / "late.txt").unlink()


# --------------------------------------------------------------------------- ONNX / LiteRT files
def test_onnx_force_refuses_a_file_kerascnn_did_not_write(invoke, export_dir, tmp_path, monkeypatch):
    from kerascnn import exporter as E

    monkeypatch.setattr(E, "EXTRAS", {})                  # as if onnxruntime/tf2onnx were installed
    users = tmp_path / "model.onnx"
    users.write_bytes(b"the user's own ONNX model")
    r = invoke("export", export_dir.parent / "tiny.keras", "--to", "onnx", "--out", users, "--force")
    assert "was not written by kerascnn export" in _one_error(r, 2)
    assert users.read_bytes() == b"the user's own ONNX model"


def test_single_file_exports_are_replaced_only_when_their_sidecar_proves_them(tmp_path):
    from kerascnn import exporter as E
    from kerascnn.errors import ConfigError

    path = tmp_path / "m.tflite"
    for i in range(2):
        tmp = tmp_path / f".m.partial-{i}.tflite"
        tmp.write_bytes(b"flatbuffer %d" % i)
        E.commit_file(tmp, path, "litert", force=True)
        assert path.read_bytes() == b"flatbuffer %d" % i and not tmp.exists()
        assert E.file_not_replaceable(path, "litert") is None
    assert E.file_not_replaceable(path, "onnx") is not None            # another format's sidecar
    path.write_bytes(b"edited by the user")
    assert "changed since kerascnn wrote it" in E.file_not_replaceable(path, "litert")
    tmp = tmp_path / ".m.partial-9.tflite"
    tmp.write_bytes(b"new")
    with pytest.raises(ConfigError):
        E.commit_file(tmp, path, "litert", force=True)
    assert path.read_bytes() == b"edited by the user"
    other = tmp_path / "other.tflite"
    other.symlink_to(path)
    assert "not a plain file" in E.file_not_replaceable(other, "litert")
