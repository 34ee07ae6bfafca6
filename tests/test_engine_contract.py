"""The engine contract (kerascnn/engines/base.py), one check run against every engine: build, K
steps, a checkpoint round trip, an exact resume (at an epoch end, from an older state, inside an
epoch), the NaN stop, and streaming from disk (or a clear refusal). The TensorFlow engine runs in this process, the JAX engine in one of its own
(Keras picks its backend once per process)."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine_contract import BATCH, K, check, write_folder

ROOT = Path(__file__).resolve().parents[1]


def _holds(r: dict, name: str) -> None:
    assert r["is_engine"]
    assert r["record_keys"] == ["engine", "strategy_resolved", "replicas", "devices", "precision_resolved",
                                "jit_resolved"]
    assert r["describe"] and isinstance(r["readers"][0], int) and r["readers"][0] >= 1
    assert r["precision"] in ("float32", "mixed_bfloat16", "mixed_float16")
    assert r["k_steps"][2] == K * BATCH and r["k_steps"][0] > 0          # K steps, every example counted once
    assert r["evaluate"][2] == 96 and 0 <= r["evaluate"][1] <= 96
    assert r["lr"] == pytest.approx(1e-2)
    assert r["round_trip_equal"] and r["round_trip_scores_equal"], name
    assert r["resume_moved"] and r["resume_bitwise"], name               # resumed == uninterrupted, bitwise
    assert r["seed_states_saved"] == 1 and r["resume_older_state_bitwise"], name
    # inside an epoch: weights and the epoch's sums bitwise; the Dropout seed state is what makes it so
    assert r["inside_bitwise"] and r["inside_bitwise_sums"], name
    assert not r["inside_without_seeds"], name
    assert r["nan_reported"], name
    stream = r["stream"]
    if "refused" in stream:
        assert "\n" not in stream["refused"] and "--stream off" in stream["refused"]
    else:   # 48 files: 80% train split = 38 images; one step of 16; every one scored once
        assert stream == {"count": BATCH, "finite": True, "evaluated": 38.0, "files": 38,
                          "after_release": "set_train_data first"}, stream


def test_the_tensorflow_engine_keeps_the_contract(tmp_path):
    from kerascnn.distribute import choose
    from kerascnn.engines.tensorflow import TensorFlowEngine

    info = choose("default")
    r = check(lambda k: TensorFlowEngine(info, k), write_folder(tmp_path / "imgs"), str(tmp_path))
    _holds(r, "tensorflow")
    assert r["describe"].startswith("strategy default") and r["readers"] == [1, "workers"]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_the_jax_engine_keeps_the_contract(tmp_path):
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "engine_contract.py"), "jax",
                        write_folder(tmp_path / "imgs"), str(tmp_path)], capture_output=True, text=True, env=env,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(next(l for l in r.stdout.splitlines() if l.startswith("RESULT "))[len("RESULT "):])
    _holds(result, "jax")
    assert result["describe"] == "engine jax, 1 device(s) on cpu:0" and result["readers"] == [1, "processes"]
