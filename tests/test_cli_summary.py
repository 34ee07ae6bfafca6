"""`kerascnn list`, `kerascnn summary` and the CLI's promises (instant help, one-line errors)."""
import json
import subprocess
import sys
import time

import pytest

from kerascnn.cli import COMMANDS


def test_help_is_instant_and_imports_no_tensorflow():
    code = ("import sys, time; t = time.perf_counter(); from kerascnn.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('TF', 'tensorflow' in sys.modules, 'keras' in sys.modules, time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    line = out.strip().splitlines()[-1].split()
    assert line[:3] == ["TF", "False", "False"]
    assert float(line[3]) < 1.0


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_help_imports_no_tensorflow(command):
    code = (f"import sys\nfrom kerascnn.cli import main\ntry:\n    main(['{command}', '--help'])\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\n"
            "print('TF', 'tensorflow' in sys.modules)")
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "TF False"
    assert time.perf_counter() - t < 5  # generous for a loaded CI box; the import itself is ~0.1 s


def test_python_cli_py_behaves_like_kerascnn():
    out = subprocess.run([sys.executable, "cli.py", "list", "lenet*"], capture_output=True, text=True, check=True)
    assert "lenet5" in out.stdout and "61,706" in out.stdout


def test_list_table_and_json(invoke):
    r = invoke("list")
    assert r.exit_code == 0
    assert "vgg16" in r.output and "138,357,544" in r.output and "15.47 G" in r.output
    r = invoke("list", "--format", "json")
    rows = {row["name"]: row for row in json.loads(r.output)}
    assert rows["resnet18"]["trainable_params"] == 11_689_512
    assert rows["convnet"]["params"] == 123_690 and rows["convnet"]["default_input"] == [28, 28, 1]
    assert rows["alexnet"]["year"] == 2012 and "Krizhevsky" in rows["alexnet"]["paper"]
    assert invoke("list", "nothing*").exit_code == 2


def test_summary_convnet_shows_keras_and_lecture_numbers(invoke):
    r = invoke("summary", "convnet")
    assert r.exit_code == 0, r.output
    assert "Total params: 123,690" in r.output          # Keras's own summary
    assert "18,496 ok" in r.output                      # analysis next to Keras's count
    assert "agrees with the arithmetic on every layer: yes" in r.output


def test_summary_json_keys_and_values(invoke):
    r = invoke("summary", "convnet", "--format", "json")
    d = json.loads(r.output)
    for key in ("model", "input_shape", "total_params", "trainable_params", "non_trainable_params", "macs",
                "receptive_field", "layers"):
        assert key in d
    assert d["total_params"] == 123_690 and d["input_shape"] == [28, 28, 1]
    assert d["keras"] == {"total_params": 123_690, "trainable_params": 123_690, "non_trainable_params": 0,
                          "layers_match": True}
    first = d["layers"][0]
    assert {k: first[k] for k in ("name", "class", "output_shape", "params", "macs", "receptive_field", "jump")} == {
        "name": "conv2d", "class": "Conv2D", "output_shape": [26, 26, 32], "params": 320,
        "macs": 26 * 26 * 32 * 9, "receptive_field": 3, "jump": 1}


def test_summary_bn_model_counts_non_trainable_not_optimizer(invoke):
    d = json.loads(invoke("summary", "resnet18", "--format", "json").output)
    assert (d["total_params"], d["trainable_params"], d["non_trainable_params"]) == (11_699_112, 11_689_512, 9_600)
    assert d["keras"]["total_params"] == 11_699_112 and d["keras"]["layers_match"]
    assert abs(d["macs"] / 1e9 - 1.82) < 0.02 * 1.82


def test_summary_of_the_lecture_exercise_spec(invoke):
    r = invoke("summary", "conv5-10s1p2", "--input-shape", "32,32,3", "--format", "json")
    d = json.loads(r.output)
    assert (d["layers"][0]["output_shape"], d["total_params"], d["macs"]) == ([32, 32, 10], 760, 768_000)
    r = invoke("summary", "conv5-10s1p2", "--input-shape", "32x32x3", "--no-keras")
    assert "768,000" in r.output and "760" in r.output


def test_summary_flags_geometry_that_does_not_fit(invoke):
    r = invoke("summary", "conv3-4s3", "--input-shape", "7,7,1", "--no-keras")
    assert r.exit_code == 0 and "doesn't fit: (7 - 3 + 2*0)/3 + 1 = 2.333" in r.output
    r = invoke("summary", "conv3-4s3", "--input-shape", "7,7,1", "--no-keras", "--strict")
    assert r.exit_code == 2 and "doesn't fit" in r.output


@pytest.mark.parametrize("args,needle", [
    (["summary", "vgg16", "--input-shape", "28,28,1"], "smallest input that works is 32x32x1"),
    (["summary", "alexnet", "--input-shape", "32,32,3", "--no-keras"], "pool2"),
    (["summary", "resnet81"], "did you mean resnet18"),
    (["summary", "conv5-1", "--input-shape", "3,3,1"], "collapses"),
    (["summary", "conv5-10s1p2"], "--input-shape"),
    (["summary", "convnet", "--input-shape", "0,28,1"], ">= 1"),
    (["summary", "convnet", "--input-shape", "a,b,c"], "integers"),
    (["summary", "convnet", "-o", "x=1"], "no option"),
    (["summary", "conv3-8q", "--input-shape", "8,8,1"], "cannot read"),
])
def test_bad_input_one_line_error_exit_2(invoke, args, needle):
    r = invoke(*args)
    assert r.exit_code == 2, r.output
    assert needle in r.output
    assert "Traceback" not in r.output
    error_lines = [l for l in r.output.splitlines() if l.startswith("Error:")]
    assert len(error_lines) == 1
