"""The rough edges of a new user's first hour (issue 16): list by word, class names for any data,
one-line domain errors, export's --format json and input contract, help texts, emulated bf16."""
import json
import os

import numpy as np
import pytest

from conftest import kerascnn_in_process, run_kerascnn
from kerascnn import data as D
from kerascnn.errors import ConfigError


# ------------------------------------------------------------------ list
def test_list_matches_a_word_as_substring_of_name_or_family(invoke):
    def names(*args):
        r = invoke("list", *args, "--format", "json")
        assert r.exit_code == 0, r.output
        return [row["name"] for row in json.loads(r.output)]

    assert names("resnet") == ["inceptionresnetv2", "resnet18", "resnet34", "resnet50", "resnet50v2", "resnet101",
                               "resnet101v2", "resnet152", "resnet152v2"]   # the keras.applications family too
    assert names("resnet1") == ["resnet18", "resnet101", "resnet101v2", "resnet152", "resnet152v2"]
    assert names("lecture") == ["convnet", "mlp"]                       # a family name
    assert names("VGG16") == ["vgg16", "vgg16_bn"]                       # substring, any case
    assert names("vgg1?") == ["vgg11", "vgg13", "vgg16", "vgg19"]        # wildcards keep their meaning
    assert "plain word" in invoke("list", "--help").output.replace("\n  ", " ")
    r = invoke("list", "transformer")
    assert r.exit_code == 2 and r.output.strip() == ("Error: no model matches 'transformer'; "
                                                     "run `kerascnn list` for the zoo")


# ------------------------------------------------------------------ class names
def test_parse_class_names_from_a_list_a_file_or_json(tmp_path):
    assert D.parse_class_names("cat, dog,bird") == ["cat", "dog", "bird"]
    (tmp_path / "names.txt").write_text("T-shirt/top\nTrouser\n\nAnkle boot\n")
    assert D.parse_class_names(str(tmp_path / "names.txt")) == ["T-shirt/top", "Trouser", "Ankle boot"]
    (tmp_path / "names.json").write_text('["a, b", "c"]')
    assert D.parse_class_names(str(tmp_path / "names.json")) == ["a, b", "c"]
    assert D.parse_class_names(None) is None
    for bad, needle in (("cat", "two or more"), ("a,,b", "two or more"), ("a,b,a", "'a' appears twice"),
                        ("no/such/names.txt", "no such file")):
        with pytest.raises(ConfigError, match=needle):
            D.parse_class_names(bad)


def _npz(path, k=3, n=30, **extra):
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 256, (n, 8, 8), dtype=np.uint8), y_train=np.arange(n) % k,
             x_test=rng.integers(0, 256, (k * 2, 8, 8), dtype=np.uint8), y_test=np.arange(k * 2) % k, **extra)
    return str(path)


def test_npz_class_names_array_and_the_override_for_any_source(tmp_path):
    f = _npz(tmp_path / "f.npz", class_names=np.array(["ant", "bee", "cow"]))
    assert D.load_data(data=f).class_names == ["ant", "bee", "cow"]                 # the documented array
    assert D.load_data(data=f, class_names="x,y,z").class_names == ["x", "y", "z"]  # the override wins
    assert D.load_data("digits", class_names=",".join("abcdefghij")).class_names == list("abcdefghij")
    with pytest.raises(ConfigError, match="gives 2 names but file:.* has labels up to 2"):
        D.load_data(data=f, class_names="x,y")


def test_class_names_in_a_config_file_reach_config_json_and_evaluate(tmp_path, invoke):
    f = _npz(tmp_path / "f.npz")
    (tmp_path / "c.yaml").write_text(f"model: lenet5\ndata: {f}\nepochs: 1\nclass_names: ant,bee,cow\n")
    r = kerascnn_in_process("train", "--config", tmp_path / "c.yaml", "--run-dir", tmp_path / "run", "-q")
    assert r.returncode == 0, r.stderr[-2000:]
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["class_names"] == ["ant", "bee", "cow"] and cfg["num_classes"] == 3
    ev = invoke("evaluate", tmp_path / "run", "--format", "json", "--out", tmp_path / "ev")
    assert ev.exit_code == 0, ev.output
    assert [c["class"] for c in json.loads(ev.stdout)["per_class"]] == ["ant", "bee", "cow"]
    ev = invoke("evaluate", tmp_path / "run", "--format", "json", "--out", tmp_path / "ev2", "--class-names", "x,y,z")
    assert [c["class"] for c in json.loads(ev.stdout)["per_class"]] == ["x", "y", "z"]
    from PIL import Image

    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(tmp_path / "one.png")
    pr = invoke("predict", tmp_path / "run", tmp_path / "one.png", "--format", "json", "--class-names", "x,y,z")
    assert sorted(t["class"] for t in json.loads(pr.stdout)[0]["top"]) == ["x", "y", "z"]
    pr = invoke("predict", tmp_path / "run", tmp_path / "one.png", "--class-names", "x,y")
    assert pr.exit_code == 2 and pr.output.strip() == "Error: --class-names gives 2 names but the model has 3 classes"
    # the run's config.json reproduces the names; with other data they are dropped, not misapplied
    from kerascnn.training.merge import resolve_config

    recorded = tmp_path / "run" / "config.json"
    assert resolve_config({}, config_file=recorded).class_names == ("ant", "bee", "cow")
    assert resolve_config({"dataset": "digits"}, config_file=recorded).class_names is None


# ------------------------------------------------------------------ help texts
def test_visualize_help_breaks_no_word_and_summary_help_has_the_spec_syntax(invoke):
    from kerascnn.commands.visualize import KINDS

    text = invoke("visualize", "--help", terminal_width=80, prog_name="kerascnn").output
    assert text.splitlines()[0] == "Usage: kerascnn visualize [OPTIONS] KIND [MODEL_OR_RUN]"
    words = set(text.replace("(", " ").split())
    assert all(kind in words for kind in KINDS), [k for k in KINDS if k not in words]
    summary = invoke("summary", "--help").output
    for token in ("convF-K", "maxpoolF", "fcN[nb]", "N*LAYER", '"Spec language"'):
        assert token in summary, token


def test_export_format_json_and_the_hidden_json_alias(tmp_path, invoke):
    help_text = invoke("export", "--help").output
    assert "--format [table|json]" in help_text and "--json" not in help_text and "--to" in help_text
    r = invoke("export", "lenet5", "--out", tmp_path / "a", "--format", "json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["path"] == str(tmp_path / "a") and out["format"] == "savedmodel" and out["max_abs_diff"] <= 1e-5
    old = invoke("export", "lenet5", "--out", tmp_path / "b", "--json")        # the deprecated spelling
    assert old.exit_code == 0 and json.loads(old.output)["path"] == str(tmp_path / "b")


def test_visualize_filters_of_a_model_name_says_the_weights_are_untrained(tmp_path, invoke):
    r = invoke("visualize", "filters", "lenet5", "--out", tmp_path / "f.png")
    assert r.exit_code == 0, r.output
    assert ("note: lenet5 is an untrained model: these are its random initial weights "
            "(train it first, then pass the run directory)") in r.output
    assert (tmp_path / "f.png").stat().st_size > 1000


# ------------------------------------------------------------------ bf16 on CPUs without it
def test_bench_warns_in_one_line_when_bfloat16_is_emulated():
    args = ["bench", "lenet5", "--precision", "mixed_bfloat16", "--mode", "infer", "--steps", "1",
            "--warmup", "0", "--repeats", "1", "--batch-size", "2", "--format", "json"]
    emulated = run_kerascnn(*args, env={"KERASCNN_CPU_BF16": "0"}, timeout=300)
    assert emulated.returncode == 0, emulated.stderr[-2000:]
    assert json.loads(emulated.stdout)["precision"] == "mixed_bfloat16"        # stdout stays clean JSON
    warnings = [l for l in emulated.stderr.splitlines() if l.startswith("warning:")]
    assert warnings == ["warning: this CPU has no native bfloat16 (AVX512_BF16 or AMX): mixed_bfloat16 is "
                        "emulated and runs several times slower than float32 here"]


def test_emulated_precision_warning_only_for_bf16_without_native_support(monkeypatch, capsys):
    from kerascnn.commands.bench import warn_emulated_precision
    from kerascnn.cpu import cpu_description

    monkeypatch.setenv("KERASCNN_CPU_BF16", "1")
    assert warn_emulated_precision("mixed_bfloat16") is False
    monkeypatch.setenv("KERASCNN_CPU_BF16", "0")
    assert warn_emulated_precision("float32") is False
    assert capsys.readouterr().err == ""
    assert f"({os.cpu_count()} cores; " in cpu_description()


# ------------------------------------------------------------------ ONNX input contract
def test_onnx_export_takes_uint8_images_like_the_savedmodel(tmp_path, invoke):
    pytest.importorskip("tf2onnx")
    ort = pytest.importorskip("onnxruntime")
    r = invoke("export", "lenet5", "--to", "onnx", "--out", tmp_path / "m", "--format", "json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["path"] == str(tmp_path / "m.onnx") and "uint8" in out["note"]
    sess = ort.InferenceSession(out["path"])
    inp = sess.get_inputs()[0]
    assert inp.name == "images" and inp.type == "tensor(uint8)" and inp.shape[1:] == [28, 28, 1]
    x = np.random.default_rng(1).integers(0, 256, (4, 28, 28, 1), dtype=np.uint8)
    got = sess.run(None, {"images": x})[0]
    assert got.shape == (4, 10) and np.allclose(got.sum(1), 1.0, atol=1e-5)
    assert out["max_abs_diff"] <= 1e-4  # the export verified itself against Keras on x / 255
