"""Issue 13: kerascnn replaces or deletes only what it can prove it wrote; bombs and hostile
inputs are refused in one line before anything big is allocated."""
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest


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
    (out / "saved_model.pb").write_bytes(b"stale")
    r = invoke("export", tiny_model, "--out", out, "--force")
    assert r.exit_code == 0, r.output
    assert (out / "saved_model.pb").stat().st_size > 1000
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
