"""`kerascnn bench`: the JSON contract and real numbers from the analysis module."""
import importlib.util
import json

import pytest

from conftest import run_kerascnn
from kerascnn.registry import get_entry


def test_bench_json_has_the_promised_keys_and_analysis_macs(invoke):
    r = invoke("bench", "convnet", "--batch-size", "32", "--steps", "3", "--warmup", "1", "--repeats", "2",
               "--format", "json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    for key in ("model", "batch_size", "device", "precision", "macs_per_image", "train_images_per_second",
                "infer_images_per_second", "train_ms_per_step", "train_gflops", "strategy", "versions"):
        assert key in d, key
    assert d["macs_per_image"] == get_entry("convnet").analyze().macs == 2_529_728
    assert d["batch_size"] == 32 and d["precision"] == "float32" and d["device_type"] == "CPU"
    assert d["train_images_per_second"] > 0 and d["infer_images_per_second"] > d["train_images_per_second"]
    assert abs(d["train_gflops"] - d["train_images_per_second"] * 6 * 2_529_728 / 1e9) < 0.05 * d["train_gflops"] + 0.01
    assert d["train_peak_fraction"] is None  # no GPU here


def test_bench_single_mode_and_table(invoke):
    r = invoke("bench", "lenet5", "--mode", "infer", "--steps", "2", "--warmup", "1", "--repeats", "1",
               "--format", "json")
    d = json.loads(r.output)
    assert "infer_images_per_second" in d and "train_images_per_second" not in d
    r = invoke("bench", "lenet5", "--mode", "train", "--steps", "2", "--warmup", "1", "--repeats", "1")
    assert r.exit_code == 0 and "images/s" in r.output
    assert "multiply-adds per image: 416,520" in r.output  # LeNet-5 at 28x28x1


@pytest.mark.parametrize("args,code,needle", [
    (["bench", "nosuchnet"], 2, "unknown model"),
    (["bench", "vgg16", "--input-shape", "28,28,1"], 2, "smallest input"),
    (["bench", "convnet", "--batch-size", "0"], 2, "0 is not in the range"),
    (["bench", "convnet", "--mode", "fly"], 2, "fly"),
])
def test_bench_bad_input(invoke, args, code, needle):
    r = invoke(*args)
    assert r.exit_code == code and needle in r.output and "Traceback" not in r.output


@pytest.mark.skipif(importlib.util.find_spec("jax") is not None, reason="jax is installed here")
def test_bench_jax_backend_without_jax_is_one_line():
    r = run_kerascnn("bench", "convnet", "--backend", "jax")
    assert r.returncode == 2
    assert "--backend jax needs the jax package" in r.stderr and "Traceback" not in r.stderr
