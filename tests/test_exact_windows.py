"""Pools with ceil_mode and dilation, strided dilated convolutions, transposed convolutions and
up-sampling: kerascnn's arithmetic and values against PyTorch's, recorded in
``tests/fixtures/torch_values.json`` by ``tests/fixtures/make_torch_values_fixture.py`` (no torch here)."""
import json
from pathlib import Path

import numpy as np
import pytest

from kerascnn.analysis import analyze
from kerascnn.errors import ConfigError, GeometryError
from kerascnn.speclang import parse

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "torch_values.json").read_text())
CASES = FIXTURE["cases"]


def pattern(shape, mult=37, mod=19):
    """The generator's small integers (make_torch_values_fixture.pattern)."""
    n = int(np.prod(shape))
    return ((np.arange(n) * mult) % mod - mod // 2).reshape(shape).astype(np.float32)


def _kind(spec: str) -> str:
    return "pool" if "pool" in spec else next(k for k in ("tconv", "conv", "up") if spec.startswith(k))


def test_fixture_covers_every_kind_and_pytorchs_refusals():
    assert {_kind(c["spec"]) for c in CASES} == {"pool", "conv", "tconv", "up"}
    assert sum("ceil" in c["spec"] for c in CASES) >= 100 and sum("error" in c for c in CASES) >= 100


def test_output_sizes_and_refusals_equal_pytorchs():
    """Every case: the lecture arithmetic gives PyTorch's output shape, or refuses what PyTorch refuses
    (pool padding above half the window; a size that collapses)."""
    wrong = []
    for case in CASES:
        shape = (case["n"], case["n"], case["c"])
        try:
            got = analyze(parse(case["spec"]), shape).output_shape
        except ConfigError as e:
            expected = "error" in case and (isinstance(e, GeometryError) == ("Calculated output size" in case["error"]))
            if not expected:
                wrong.append((case["spec"], shape, str(e)))
            continue
        if "error" in case or got != np.shape(case["out"]):
            wrong.append((case["spec"], shape, got, case.get("error") or np.shape(case["out"])))
    assert not wrong, wrong[:5]


def _keras_output(case):
    from kerascnn.rules import rule_for
    from kerascnn.rules.base import exact_windows

    spec = parse(case["spec"])[0].named("layer")
    x = pattern((case["n"], case["n"], case["c"]))[None]
    with exact_windows():
        layers = rule_for(spec).keras_layers()
    y = x
    for layer in layers:
        if layer.name == "layer" and "kernel" in case:
            layer.build(y.shape)
            k = pattern(tuple(layer.kernel.shape[:2]) + (case["c"], 3), 13, 7)  # (F, F, C_in, K)
            if "Conv2DTranspose" in type(layer).__name__:
                k = k.transpose(0, 1, 3, 2)  # Keras keeps (F, F, K, C_in)
            layer.set_weights([k, np.zeros(3, np.float32)])
        y = layer(y)
    return np.asarray(y)[0].astype(np.float64)


@pytest.mark.parametrize("kind", ["pool", "conv", "tconv", "up"])
def test_values_equal_pytorchs(kind):
    """The Keras layers kerascnn builds (``kerascnn values``) compute PyTorch's numbers: ceil-mode pools
    (the average's divisor without the overhang), dilated max pools, a stride-2 dilation-2 convolution
    (stride-1 dilated, subsampled), transposed convolutions, nearest/bilinear up-sampling. Inputs and
    weights are small integers: sums are exact in float32, averages and interpolations within round-off."""
    cases = [c for c in CASES if "out" in c and _kind(c["spec"]) == kind]
    if kind == "pool":  # Keras's own pools are checked against NumPy in test_layer_values: here kerascnn's
        cases = [c for c in cases if "ceil" in c["spec"] or "d2" in c["spec"]]
    assert len(cases) >= 8
    for case in cases:
        want = np.array(case["out"])
        got = _keras_output(case)
        np.testing.assert_allclose(got, want, rtol=4e-7, atol=4e-6 * max(1.0, np.abs(want).max()),
                                   err_msg=case["spec"])


def test_cli_values_of_a_strided_dilated_conv_and_a_ceil_pool(invoke):
    """End to end: `kerascnn values` runs what Keras alone refuses (stride 2 with dilation 2)."""
    r = invoke("values", "conv3-1s2d2", "--input", "arange:7x7", "--format", "json")
    assert r.exit_code == 0, r.output
    x = np.arange(49).reshape(7, 7)
    want = [[x[i:i + 5:2, j:j + 5:2].sum() for j in (0, 2)] for i in (0, 2)]   # every other tap of a 5x5 span
    assert json.loads(r.output)["layers"][-1]["values"][0] == want == [[144, 162], [270, 288]]
    r = invoke("values", "avgpool3s2p1ceil", "--input", "arange:6x6", "--format", "json")
    corner = json.loads(r.output)["layers"][-1]["values"][0][0][-1]
    assert corner == pytest.approx((5 + 11) / 6)   # window of 3x2 inside the padded input: the overhang not counted
