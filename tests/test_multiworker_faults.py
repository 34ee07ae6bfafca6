"""Two real worker processes on 127.0.0.1 with TF_CONFIG (MultiWorkerMirroredStrategy through
kerascnn's own strategy.run loop): identical weights, chief-only writes, a killed worker makes
the survivor fail fast with one line, and rerunning both with --resume continues."""
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import epochs_done, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _ports(n=2):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _worker(index, ports, args, extra_env=None):
    tf_config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
    env = dict(os.environ, TF_CONFIG=json.dumps(tf_config), TF_CPP_MIN_LOG_LEVEL="3",
               KERASCNN_COLLECTIVE_TIMEOUT="30", **(extra_env or {}))
    return subprocess.Popen([sys.executable, "-m", "kerascnn", "train", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _sha(stdout):
    return [l.split()[-1] for l in stdout.splitlines() if l.startswith("weights sha256")]


def test_two_workers_train_to_identical_weights_and_only_the_chief_writes(tmp_path):
    ports = _ports()
    args = ["convnet", "--epochs", "2", "--seed", "4", "-q"]
    procs = [_worker(0, ports, args + ["--run-dir", tmp_path / "chief"]),
             _worker(1, ports, args + ["--run-dir", tmp_path / "worker1"])]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-1500:] + outs[1][1][-1500:]
    assert "strategy multiworker" in outs[0][0] and "2 replica(s)" in outs[0][0]
    shas = [_sha(o[0]) for o in outs]
    assert shas[0] and shas[0] == shas[1]
    assert (tmp_path / "chief" / "last.keras").is_file() and (tmp_path / "chief" / "metrics.json").is_file()
    assert not (tmp_path / "worker1").exists()        # the non-chief wrote only to a temp dir, now removed


def test_killed_worker_makes_the_other_fail_fast_and_both_resume(tmp_path):
    ports = _ports()
    run = tmp_path / "run"
    args = ["convnet", "--epochs", "4", "--seed", "4", "-q", "--run-dir", run]
    chief = _worker(0, ports, args)
    victim = _worker(1, ports, args)
    assert wait_until(chief, lambda: epochs_done(run) >= 2)   # the chief's history lists epoch 2
    victim.send_signal(signal.SIGKILL)
    killed_at = time.time()
    out, err = chief.communicate(timeout=120)
    reaction = time.time() - killed_at
    victim.wait()
    assert chief.returncode == 1
    errors = [l for l in err.splitlines() if l.startswith("Error:")]
    assert len(errors) == 1 and "lost contact with another worker at epoch 3" in errors[0], err[-1500:]
    assert "Traceback" not in err
    assert reaction < 60, reaction
    print(f"survivor exited {reaction:.1f} s after the SIGKILL")
    with open(run / "history.csv") as fh:
        assert [int(r["epoch"]) for r in csv.DictReader(fh)] == [1, 2]

    ports = _ports()
    resumed = [_worker(i, ports, ["--resume", run, "-q"]) for i in (0, 1)]
    outs = [p.communicate(timeout=300) for p in resumed]
    assert [p.returncode for p in resumed] == [0, 0], outs[0][1][-1500:]
    assert "from epoch 3" in outs[0][0]
    assert _sha(outs[0][0]) == _sha(outs[1][0])
    with open(run / "history.csv") as fh:
        assert [int(r["epoch"]) for r in csv.DictReader(fh)] == [1, 2, 3, 4]
