"""The spec language on the command line: one Error: line, spelling-independent "doesn't fit",
--strict, channels-first input shapes, the new vocabulary with Keras agreeing."""
import json

import pytest


def lines(r):
    return [l for l in r.output.splitlines() if l.strip()]


@pytest.mark.parametrize("spelling", ["conv3-64s2same", "conv3-64s2p1"])
def test_doesnt_fit_does_not_depend_on_the_spelling(invoke, spelling):
    r = invoke("summary", spelling, "--input-shape", "32,32,3", "--no-keras", "--format", "json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["output_shape"] == [16, 16, 64]
    assert out["warnings"] == ["conv2d: doesn't fit: (32 - 3 + 2*1)/2 + 1 = 16.5, not an integer (floored to 16)"]


def test_strict_reports_every_layer_of_a_classic_stem_that_does_not_fit(invoke):
    r = invoke("summary", "resnet18", "--strict", "--no-keras")
    assert r.exit_code == 2
    msg = lines(r)[-1]
    assert msg.startswith("Error: --strict: ") and "layer(s) don't fit the lecture formula (floored)" in msg
    assert "conv1_conv: doesn't fit: (224 - 7 + 2*3)/2 + 1 = 112.5" in msg
    assert "pool1: doesn't fit: (112 - 3 + 2*1)/2 + 1 = 56.5" in msg
    ok = invoke("summary", "resnet18", "--strict", "--no-keras", "--input-shape", "225,225,3")
    assert ok.exit_code == 0, ok.output   # odd sizes fit all the way: 225 -> 113 -> 57 -> 29 -> 15 -> 8


@pytest.mark.parametrize("spec,message", [
    ("layernrom", "Error: unknown layer 'layernrom' (did you mean 'layernorm'?)"),
    ("conv3-8, gelu, maxpol2", "Error: unknown layer 'maxpol2' (did you mean 'maxpool'"),
    ("conv" + "1" * 5000 + "-8", "has more than 7 digits"),
    ("1000*(1000*(relu))", "at most 5000 layers; this one expands to 1,000,000"),
    ("res(conv3-8p1 | conv1-8", "expected ')'"),
])
def test_a_bad_spec_is_one_error_line_without_the_usage_header(invoke, spec, message):
    r = invoke("summary", spec, "--input-shape", "8,8,1", "--no-keras")
    assert r.exit_code == 2
    assert len(lines(r)) == 1 and lines(r)[0].startswith("Error: ") and message in lines(r)[0], r.output
    assert "Usage:" not in r.output and "kerascnn list" not in r.output


def test_an_unknown_model_name_still_points_to_the_list(invoke):
    r = invoke("summary", "resnt18", "--no-keras")
    assert r.exit_code == 2 and "resnet18" in r.output


def test_channels_first_input_shape_is_detected_and_can_be_insisted_on(invoke):
    r = invoke("summary", "conv5-10p2", "--input-shape", "3,32,32", "--no-keras")
    assert r.exit_code == 2
    assert "3,32,32 looks channels-first (C,H,W); kerascnn reads H,W,C: write 32,32,3, or 3,32,32! to mean " \
           "H=3, W=32, C=32" in r.output
    r = invoke("summary", "conv1-10", "--input-shape", "3,32,32!", "--no-keras", "--format", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["output_shape"] == [3, 32, 10]
    assert invoke("summary", "conv5-10p2", "--input-shape", "32,32,3", "--no-keras").exit_code == 0


def test_new_vocabulary_in_the_summary_with_keras_agreeing(invoke):
    spec = ("conv3-16s2p1nb, bn, relu, res(dwconv3p1nb,bn,relu,conv1-16nb,bn), leakyrelu, "
            "cat(conv1x3-8p0x1 | conv3x1-8p1x0 | conv3-8p2d2), gn4, ln, sepconv3-32s2p1, sdropout0.1, gelu, gap, fc10")
    r = invoke("summary", spec, "--input-shape", "16,16,3", "--format", "json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["keras"]["layers_match"] is True
    assert out["keras"]["total_params"] == out["total_params"]
    assert out["output_shape"] == [10]


def _readme_spec_examples():
    from pathlib import Path
    import re
    text = (Path(__file__).resolve().parents[1] / "docs" / "spec-language.md").read_text()
    section = text.split("# Spec language", 1)[1].split("\n## The values", 1)[0]
    out = []
    for block in re.findall(r"```\n(.*?)```", section, re.S):
        for chunk in re.split(r"^\$ ", block, flags=re.M)[1:]:
            command, _, expected = chunk.partition("\n")
            out.append((command, expected))
    return out


@pytest.mark.parametrize("command,expected", _readme_spec_examples())
def test_readme_spec_language_examples_are_real_output(invoke, command, expected):
    import shlex
    args = shlex.split(command)
    assert args[0] == "kerascnn" and "--no-keras" in args
    r = invoke(*args[1:])
    assert r.exit_code == 0, r.output
    assert r.output == expected
