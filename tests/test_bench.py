"""`kerascnn bench`: the JSON contract and real numbers from the analysis module."""
import importlib.util
import json

import pytest

from conftest import run_kerascnn, run_without_tensorflow
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
    assert d["engine"].startswith("tensorflow, strategy.run loop")  # the training step of `kerascnn train`


def test_bench_trains_through_the_engines_not_its_own_step():
    """bench times the engines' training step (kerascnn.engines), it does not rewrite one."""
    import ast
    import pathlib

    src = (pathlib.Path(__file__).resolve().parents[1] / "kerascnn" / "bench.py").read_text()
    names = {n.attr if isinstance(n, ast.Attribute) else n.id for n in ast.walk(ast.parse(src))
             if isinstance(n, (ast.Attribute, ast.Name))}
    assert "GradientTape" not in names and "apply_gradients" not in names and "value_and_grad" not in names
    assert "TensorFlowEngine" in names and "JaxEngine" in names


def test_bench_single_mode_and_table(invoke):
    r = invoke("bench", "lenet5", "--mode", "infer", "--steps", "2", "--warmup", "1", "--repeats", "1",
               "--format", "json")
    d = json.loads(r.output)
    assert "infer_images_per_second" in d and "train_images_per_second" not in d
    r = invoke("bench", "lenet5", "--mode", "train", "--steps", "2", "--warmup", "1", "--repeats", "1")
    assert r.exit_code == 0 and "images/s" in r.output
    assert "multiply-adds per image: 416,520" in r.output  # LeNet-5 at 28x28x1
    assert "precision float32" in r.output and "versions: keras 3." in r.output and "tensorflow 2." in r.output


def test_bench_restores_the_dtype_policy_and_refuses_another_backend_in_one_line(invoke):
    """In a process whose Keras runs on TensorFlow: a mixed-precision bench leaves the global dtype
    policy as it found it (main left mixed_bfloat16 set), and --backend jax is refused in one line
    (main re-executed the whole process with KERAS_BACKEND=jax)."""
    import keras

    r = invoke("bench", "lenet5", "--mode", "infer", "--precision", "mixed_bfloat16", "--steps", "1",
               "--warmup", "0", "--repeats", "1", "--format", "json")
    assert r.exit_code == 0 and json.loads(r.output[r.output.index("{"):])["precision"] == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == "float32"
    if importlib.util.find_spec("jax") is not None:
        r = invoke("bench", "lenet5", "--backend", "jax")
        assert r.exit_code == 2 and r.output.count("\n") == 1
        assert "this Python process already runs Keras on tensorflow" in r.output and "KERAS_BACKEND=jax" in r.output


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


def test_cli_and_bench_front_end_need_no_tensorflow():
    for args in (["--help"], ["bench", "--help"], ["list", "resnet*"], ["summary", "convnet", "--no-keras"]):
        r = run_without_tensorflow(*args)
        assert r.returncode == 0 and "Traceback" not in r.stderr, (args, r.stderr[-2000:])
    assert "resnet50" in run_without_tensorflow("list", "resnet*").stdout
    # bad input is still refused before any framework loads
    r = run_without_tensorflow("bench", "vgg16", "--input-shape", "28,28,1", "--backend", "jax")
    assert r.returncode == 2 and "smallest input" in r.stderr
    r = run_without_tensorflow("bench", "convnet")  # the default backend names the package to install
    assert r.returncode == 2 and "pip install tensorflow" in r.stderr and "Traceback" not in r.stderr


def test_builders_layers_analysis_use_no_tensorflow_api():
    """The model path stays on the pure `keras` API so it also runs with KERAS_BACKEND=jax."""
    import ast
    import pathlib

    pkg = pathlib.Path(__file__).resolve().parents[1] / "kerascnn"
    files = [pkg / f for f in ("layers.py", "keras_build.py", "fuse.py", "analysis.py", "specs.py", "registry.py",
                               "guard.py", "speclang.py", "commands/bench.py", "commands/common.py")]
    files += sorted((pkg / "models").glob("*.py"))
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(m.split(".")[0] == "tensorflow" for m in mods), f"{path.name}:{node.lineno}"
            assert not (isinstance(node, ast.Name) and node.id == "tf"), f"{path.name}:{node.lineno} uses tf."


def test_bench_jax_backend_runs_without_tensorflow():
    pytest.importorskip("jax")
    r = run_without_tensorflow("bench", "convnet", "--backend", "jax", "--batch-size", "16", "--steps", "1",
                                "--warmup", "0", "--repeats", "1", "--format", "json", timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads(r.stdout)
    assert d["model"] == "convnet" and d["backend"] == "jax" and d["versions"]["backend"] == "jax"
    assert "jax" in d["versions"] and "tensorflow" not in d["versions"]
    assert d["macs_per_image"] == 2_529_728 and d["jit"] is True
    assert d["train_images_per_second"] > 0 and d["infer_images_per_second"] > 0


class _Dev:
    def __init__(self, platform, cc=None):
        self.platform = platform
        if cc is not None:
            self.compute_capability = cc


@pytest.mark.parametrize("model,shape,opts,h100,v100", [
    ("lenet5", None, {}, "float32", "float32"),          # 0.42 M MACs: float32 measured faster (issue 11)
    ("convnet", None, {}, "float32", "float32"),         # 2.5 M MACs: float32 measured faster
    ("resnet18", (32, 32, 3), {"small_input": True}, "mixed_bfloat16", "float32"),   # 0.56 G, 64-512 channels
    ("resnet50", None, {}, "mixed_bfloat16", "float32"),
    ("vgg16", None, {}, "mixed_bfloat16", "float32"),
])
def test_jax_gpu_precision_decision_without_a_gpu(model, shape, opts, h100, v100):
    """bf16 by default on compute capability >= 8.0 only for models with enough (wide) arithmetic;
    float32 on CPUs and pre-Ampere GPUs; an explicit request always wins."""
    from kerascnn.engines.policy import jax_precision_for, uses_tf32

    entry = get_entry(model)
    report = entry.analyze(shape or entry.default_input, 10, **opts)
    assert jax_precision_for([_Dev("gpu", "9.0")], None, report) == h100
    assert jax_precision_for([_Dev("gpu", "8.0")], None, report) == h100
    assert jax_precision_for([_Dev("gpu", "7.0")], None, report) == v100
    assert jax_precision_for([_Dev("cpu")], None, report) == "float32"
    assert jax_precision_for([_Dev("gpu", "9.0")], "float32", report) == "float32"
    assert jax_precision_for([_Dev("cpu")], "mixed_bfloat16", report) == "mixed_bfloat16"
    # float32 on Ampere/Hopper runs on the TF32 tensor cores: reported as such
    assert uses_tf32([_Dev("gpu", "9.0")], "float32") and not uses_tf32([_Dev("gpu", "9.0")], "mixed_bfloat16")
    assert not uses_tf32([_Dev("gpu", "7.5")], "float32") and not uses_tf32([_Dev("cpu")], "float32")


def test_bench_auto_precision_is_float32_on_any_cpu():
    """`bench --precision auto` (the default) resolves to float32 on CPUs whatever their bf16 support,
    on both engines (the GPU choice above is what differs)."""
    from kerascnn.bench import _precision

    report = get_entry("convnet").analyze()
    assert _precision(None, "tensorflow", "CPU", report) == ("float32", False)
    assert _precision("mixed_bfloat16", "tensorflow", "CPU", report) == ("mixed_bfloat16", False)
