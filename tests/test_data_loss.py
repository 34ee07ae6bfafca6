"""Issue 21, data loss: the run lock never follows a link or truncates what kerascnn did not
create; ``export --force`` replaces atomically and only what kerascnn can prove it wrote."""
import gc
import os
import shutil
import sys

import pytest

from kerascnn.train import rundir


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
