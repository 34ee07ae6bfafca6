"""Issue 13 items 1-4: a run directory is claimed exclusively and locked; --resume never restarts
over a run, never records a change before an epoch completes under it, and leaves a finished run alone."""
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from conftest import epochs_done, kerascnn_in_process, start_kerascnn, wait_until


def _snapshot(root):
    """bytes and mtime of every file under root (the lock file's holder pid aside)."""
    return {p.relative_to(root): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".kerascnn.lock"}


def _error_lines(text):
    return [l for l in text.splitlines() if l.startswith("Error:")]


def test_a_non_empty_run_dir_is_refused_and_the_users_files_are_untouched(tmp_path, invoke):
    mine = tmp_path / "mine"
    mine.mkdir()
    for name, data in [("best.keras", b"my model"), ("history.csv", b"my,history\n"), ("curves.png", b"png"),
                       (".best.partial-keep", b"hidden"), (".notes.partial-abcdefgh.txt", b"notes")]:
        (mine / name).write_bytes(data)
    before = _snapshot(mine)
    r = invoke("train", "convnet", "--epochs", "1", "--run-dir", mine)
    assert r.exit_code == 2, r.output
    assert len(_error_lines(r.output)) == 1 and "is not empty (it holds" in r.output and "best.keras" in r.output
    assert _snapshot(mine) == before and sorted(p.name for p in mine.iterdir()) == sorted(n.name for n in before)


def test_only_kerascnns_own_partial_files_are_swept():
    from kerascnn.training.rundir import sweep_own_partials

    import tempfile
    from pathlib import Path

    d = Path(tempfile.mkdtemp())
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    ours = [".last.partial-ab12cd_3.keras", ".history.partial-zz99yy88.csv", ".state.partial-q1w2e3r4.npz",
            f".best.partial-{dead}-0a1b2c3dq1w2e3r4.keras"]
    users = [".notes.partial-ab12cd34.txt", ".last.partial-mine.keras", ".best.partial-ab12cd34.keras.bak",
             "last.partial-ab12cd34.keras", f".best.partial-{os.getppid()}-0a1b2c3dq1w2e3r4.keras"]
    for n in ours + users:
        (d / n).write_text("x")
    removed = sweep_own_partials(d)
    assert sorted(p.name for p in removed) == sorted(ours)
    assert sorted(p.name for p in d.iterdir()) == sorted(users)
    shutil.rmtree(d)


def test_an_empty_run_dir_is_claimed_and_a_second_process_on_the_run_is_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()                                        # empty: may be claimed
    # 12 epochs of ~0.3 s: the pause below lands long before the end even on a busy machine
    first = start_kerascnn("train", "convnet", "--epochs", "12", "--seed", "2", "--run-dir", run, "-q",
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert wait_until(first, lambda: epochs_done(run) >= 1), first.stderr.read()[-2000:]
        first.send_signal(signal.SIGSTOP)              # paused from outside, after its first epoch
        held = _snapshot(run)
        again = kerascnn_in_process("train", "convnet", "--epochs", "1", "--run-dir", run, "-q")
        assert again.returncode == 2 and "already holds a run" in again.stderr
        second = kerascnn_in_process("train", "--resume", run, "-q")   # this test's process: a second one
        errors = _error_lines(second.stderr)
        assert second.returncode == 2 and len(errors) == 1, second.stderr[-2000:]
        assert f"being trained by another kerascnn process (pid {first.pid})" in errors[0]
        assert "Traceback" not in second.stderr
        assert _snapshot(run) == held                   # the refused process wrote nothing
    finally:
        first.send_signal(signal.SIGINT)               # Ctrl-C: one line with the resume hint
        first.send_signal(signal.SIGCONT)
        _, err = first.communicate(timeout=120)
    errors = _error_lines(err)
    done = epochs_done(run)                            # 1 or a few (it was paused during epoch 2 or soon after)
    assert first.returncode == 1 and len(errors) == 1 and "Traceback" not in err, err[-2000:]
    assert 1 <= done < 12 and (f"stopped by Ctrl-C after epoch {done} of 12; epochs 1-{done} are saved; continue "
                              f"with: kerascnn train --resume {run}") in errors[0]
    # the lock dies with its process: now the run resumes
    resumed = kerascnn_in_process("train", "--resume", run, "-q")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"from epoch {done + 1} (epochs 1-{done} done)" in resumed.stdout


def test_resume_without_training_state_is_refused_and_changes_nothing(trained_run, tmp_path, invoke):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "backup" / "state.npz").unlink()
    before = _snapshot(run)
    r = invoke("train", "--resume", run)
    assert r.exit_code == 2, r.output
    assert len(_error_lines(r.output)) == 1
    assert "history.csv, best.keras, last.keras, metrics.json but no backup/state.npz" in r.output
    assert _snapshot(run) == before


def test_resume_with_tb_as_a_file_is_refused_and_changes_nothing(trained_run, tmp_path, invoke):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    shutil.rmtree(run / "tb")
    (run / "tb").write_bytes(b"not a folder")
    before = _snapshot(run)
    r = invoke("train", "--resume", run, "--epochs", "4")
    assert r.exit_code == 2, r.output
    assert len(_error_lines(r.output)) == 1 and "tb is not a folder" in r.output
    assert _snapshot(run) == before


def test_a_finished_run_is_complete_and_unchanged(trained_run, tmp_path, invoke):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    before = _snapshot(run)
    r = invoke("train", "--resume", run)
    assert r.exit_code == 0, r.output
    assert "is complete (3 of 3 epochs); nothing to do" in r.output and "--epochs N with N larger than 3" in r.output
    r = invoke("train", "--resume", run, "--epochs", "3")
    assert r.exit_code == 2 and "already has 3 epochs; --epochs 3 would not extend it" in r.output
    assert _snapshot(run) == before


@pytest.mark.parametrize("args,needle", [
    (["--batch-size", "64"], "--batch-size cannot change with --resume"),
    (["--seed", "7"], "--seed cannot change with --resume"),
    (["--dataset", "mnist"], "--dataset cannot change with --resume"),
    (["--image-size", "16"], "--image-size cannot change with --resume"),
    (["--optimizer", "sgd"], "--optimizer cannot change with --resume"),
    (["-o", "dropout=0.1"], "--option cannot change with --resume"),
    (["--run-dir", "elsewhere"], "--run-dir cannot be used with --resume"),
])
def test_options_that_change_what_a_run_means_are_refused_with_resume(trained_run, tmp_path, invoke, args, needle):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    before = _snapshot(run)
    r = invoke("train", "--resume", run, "--epochs", "5", *args)
    assert r.exit_code == 2 and needle in r.output, r.output
    assert _snapshot(run) == before and not (tmp_path / "elsewhere").exists()


def test_resume_with_config_is_refused(trained_run, tmp_path, invoke):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    r = invoke("train", "--resume", run, "--config", run / "config.json")
    assert r.exit_code == 2 and "--config cannot be used with --resume" in r.output


def test_a_failed_resume_leaves_the_record_and_the_next_resume_records_its_change(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / ".mydata.partial-1").write_text("user file that looks like a partial")
    config = (run / "config.json").read_bytes()
    bad = kerascnn_in_process("train", "--resume", run, "--epochs", "4", "--lr", "1e30", "-q")
    assert bad.returncode == 1 and "loss became NaN at epoch 4" in bad.stderr, bad.stderr[-2000:]
    assert (run / "config.json").read_bytes() == config        # nothing recorded: no epoch completed
    ok = kerascnn_in_process("train", "--resume", run, "--epochs", "4", "-q")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "from epoch 4 (epochs 1-3 done)" in ok.stdout
    record = json.loads((run / "config.json").read_text())
    old = json.loads(config)
    assert record["epochs"] == 4 and record["lr"] == old["lr"] == 0.001
    assert [(c["epoch"], c["option"], c["from"], c["to"]) for c in record["changes"]] == [(4, "epochs", 3, 4)]
    assert (run / ".mydata.partial-1").read_text() == "user file that looks like a partial"
