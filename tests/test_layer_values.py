"""What the built layers compute: the lecture's cross-correlation with the padding P on every side.

Reference: a NumPy (float64) transcription of the lecture's formula
    y[i, j, k] = b[k] + sum_{u, v, c} xpad[i*S + u*d, j*S + v*d, c] * w[u, v, c, k],
xpad = x with P zeros before and after each spatial axis; output (W - F_eff + 2P)//S + 1.
Max pooling pads with -inf; average pooling counts the zero padding (count_include_pad=True).
The tolerance is derived, not tuned: float32 accumulation of n products has error at most
about n * 2**-24 * sum |x w| (a standard bound), times 4 for the rounding of the inputs themselves.
"""
import itertools

import numpy as np
import pytest

from kerascnn import specs as S
from kerascnn.rules import rule_for
from kerascnn.speclang import parse

U = 2.0 ** -24


def _pad(x, p, value=0.0):
    (t, b), (l, r) = p
    return np.pad(x, ((t, b), (l, r), (0, 0)), constant_values=value)


def ref_conv(x, w, b=None, s=(1, 1), p=((0, 0), (0, 0)), d=(1, 1)):
    """Cross-correlation (no kernel flip), x: HxWxC, w: kh x kw x C x K; returns (y, sum|x w|)."""
    xp = _pad(np.asarray(x, np.float64), p)
    kh, kw, _, k = w.shape
    fh, fw = 1 + d[0] * (kh - 1), 1 + d[1] * (kw - 1)
    ho, wo = (xp.shape[0] - fh) // s[0] + 1, (xp.shape[1] - fw) // s[1] + 1
    y = np.zeros((ho, wo, k))
    mag = np.zeros((ho, wo, k))
    for u, v in itertools.product(range(kh), range(kw)):
        patch = xp[u * d[0]: u * d[0] + s[0] * (ho - 1) + 1: s[0], v * d[1]: v * d[1] + s[1] * (wo - 1) + 1: s[1]]
        y += patch @ w[u, v]
        mag += np.abs(patch) @ np.abs(w[u, v])
    if b is not None:
        y += b
        mag += np.abs(b)
    return y, mag


def ref_pool(x, kind, f, s, p):
    xp = _pad(np.asarray(x, np.float64), ((p, p), (p, p)), -np.inf if kind == "max" else 0.0)
    ho, wo = (xp.shape[0] - f) // s + 1, (xp.shape[1] - f) // s + 1
    out = np.empty((ho, wo, x.shape[2]))
    for i, j in itertools.product(range(ho), range(wo)):
        win = xp[i * s: i * s + f, j * s: j * s + f]
        out[i, j] = win.max(axis=(0, 1)) if kind == "max" else win.sum(axis=(0, 1)) / (f * f)
    return out


def run(spec, x, weights=None):
    """Apply the spec's Keras layers (explicit pad layer included) eagerly to one HxWxC image."""
    spec = spec if spec.name else spec.named("layer")
    y = np.asarray(x, np.float32)[None]
    for layer in rule_for(spec).keras_layers():
        if weights is not None and layer.name == spec.name:
            layer.build(y.shape)
            layer.set_weights(weights)
        y = layer(y)
    return np.asarray(y)[0].astype(np.float64)


def assert_close(got, want, mag, n_terms):
    assert got.shape == want.shape
    tol = 4 * n_terms * U * mag + 1e-30
    assert np.all(np.abs(got - want) <= tol), float(np.max(np.abs(got - want) - tol))


# ---------------------------------------------------------------- the worked examples
def test_stride_2_padding_1_is_symmetric_as_in_the_lecture():
    x = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
    got = run(parse("conv3-1s2p1nb")[0], x, [np.ones((3, 3, 1, 1), np.float32)])
    assert got[:, :, 0].tolist() == [[10, 24], [51, 90]]  # Keras's own "same" gives [[45, 39], [66, 50]]
    same = run(parse("conv3-1s2same,")[0], x, [np.ones((3, 3, 1, 1), np.float32), np.zeros(1, np.float32)])
    assert same[:, :, 0].tolist() == [[10, 24], [51, 90]]  # "same" is P = (F-1)/2, one layer


def test_lecture_max_pool_example():
    x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], np.float32)[:, :, None]
    assert run(parse("maxpool2")[0], x)[:, :, 0].tolist() == [[6, 8], [3, 4]]


@pytest.mark.parametrize("text", ["maxpool2p1", "maxpool2s1p1", "maxpool3s1p1", "maxpool3s2p1", "maxpool3s2same",
                                  "maxpool3s1same"])
def test_max_pool_pads_with_minus_infinity(text):
    """An all -1 input stays -1 everywhere, borders included (zero padding would give 0)."""
    got = run(parse(text)[0], -np.ones((5, 6, 2), np.float32))
    assert got.size > 0 and np.all(got == -1.0)


@pytest.mark.parametrize("text", ["avgpool3s1p1", "avgpool2s1p1", "avgpool3s1same", "avgpool3s2p1", "avgpool2p1"])
def test_average_pool_counts_the_padding_for_every_spelling(text):
    """count_include_pad=True (PyTorch's default): a corner of a ones input averages to
    (covered cells) / F^2, e.g. 4/9 for a 3x3 window with P=1."""
    spec = parse(text)[0]
    f, s = spec.size, spec.stride or spec.size
    p = 1
    x = np.ones((6, 7, 1), np.float32)
    got = run(spec, x)
    want = ref_pool(x, "avg", f, s, p)
    assert got.shape == want.shape
    assert np.allclose(got, want, rtol=0, atol=8 * f * f * U)
    assert got[0, 0, 0] == pytest.approx(((f - p) * (f - p)) / (f * f), abs=8 * f * f * U)


# ---------------------------------------------------------------- the grid of the issue
GRID = [(f, s, p) for f in (1, 2, 3, 5, 7, 11) for s in (1, 2, 3, 4) for p in range(4)]


@pytest.mark.parametrize("f,s,p", GRID, ids=[f"F{f}S{s}P{p}" for f, s, p in GRID])
def test_conv_values_match_the_lecture_formula(f, s, p):
    """One layer per (F, S, P) on a 12x13 input (even H, odd W), 2 -> 2 channels."""
    rng = np.random.default_rng(1000 * f + 10 * s + p)
    x = rng.uniform(-1, 1, (12, 13, 2)).astype(np.float32)
    w = rng.uniform(-1, 1, (f, f, 2, 2)).astype(np.float32)
    b = rng.uniform(-1, 1, 2).astype(np.float32)
    spec = S.Conv(2, f, s, p, name="layer")
    want, mag = ref_conv(x, w, b, (s, s), ((p, p), (p, p)))
    got = run(spec, x, [w, b])
    assert got.shape == want.shape == rule_for(spec).output_shape((12, 13, 2))
    assert_close(got, want, mag, f * f * 2 + 1)


POOLS = [(k, f, s, p) for k in ("max", "avg") for f in (2, 3, 5) for s in (1, 2, 3) for p in range(f // 2 + 1)]  # 2P <= F (PyTorch)


@pytest.mark.parametrize("kind,f,s,p", POOLS, ids=[f"{k}F{f}S{s}P{p}" for k, f, s, p in POOLS])
def test_pool_values_match_the_lecture_formula(kind, f, s, p):
    rng = np.random.default_rng(100 * f + 10 * s + p)
    x = rng.uniform(-1, 1, (12, 13, 2)).astype(np.float32)
    got = run(S.Pool(kind, f, s, p), x)
    want = ref_pool(x, kind, f, s, p)
    assert got.shape == want.shape == rule_for(S.Pool(kind, f, s, p)).output_shape((12, 13, 2))
    if kind == "max":
        assert np.array_equal(got, want.astype(np.float32))
    else:
        assert np.allclose(got, want, rtol=0, atol=4 * (f * f + 1) * U)  # |x| <= 1


@pytest.mark.parametrize("text,k,s,p,d", [
    ("conv3-2p2d2", (3, 3), (1, 1), ((2, 2), (2, 2)), (2, 2)),
    ("conv3-2d3", (3, 3), (1, 1), ((0, 0), (0, 0)), (3, 3)),
    ("conv1x7-2p0x3", (1, 7), (1, 1), ((0, 0), (3, 3)), (1, 1)),
    ("conv3-2s3x2p1", (3, 3), (3, 2), ((1, 1), (1, 1)), (1, 1)),
    ("conv2-2same", (2, 2), (1, 1), ((0, 1), (0, 1)), (1, 1)),
    ("conv3-2s2p0:1x1:0", (3, 3), (2, 2), ((0, 1), (1, 0)), (1, 1)),
])
def test_dilated_rectangular_and_asymmetric_values(text, k, s, p, d):
    rng = np.random.default_rng(7)
    x = rng.uniform(-1, 1, (11, 12, 2)).astype(np.float32)
    w = rng.uniform(-1, 1, k + (2, 2)).astype(np.float32)
    b = rng.uniform(-1, 1, 2).astype(np.float32)
    spec = parse(text)[0]
    want, mag = ref_conv(x, w, b, s, p, d)
    got = run(spec, x, [w, b])
    assert got.shape == want.shape == rule_for(spec).output_shape((11, 12, 2))
    assert_close(got, want, mag, k[0] * k[1] * 2 + 1)


def test_depthwise_and_separable_values():
    """Depthwise: channel c's kernel sees only channel c; separable: then a 1x1 conv."""
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (9, 8, 3)).astype(np.float32)
    dw = rng.uniform(-1, 1, (3, 3, 3, 1)).astype(np.float32)
    pw = rng.uniform(-1, 1, (1, 1, 3, 4)).astype(np.float32)
    b = rng.uniform(-1, 1, 4).astype(np.float32)
    p = ((1, 1), (1, 1))
    per_channel = [ref_conv(x[:, :, c:c + 1], dw[:, :, c:c + 1], None, (2, 2), p) for c in range(3)]
    want_dw = np.concatenate([y for y, _ in per_channel], axis=-1)
    mag_dw = np.concatenate([m for _, m in per_channel], axis=-1)
    got_dw = run(parse("dwconv3s2p1nb")[0], x, [dw])
    assert_close(got_dw, want_dw, mag_dw, 9)
    want, _ = ref_conv(want_dw, pw, b)
    mag, _ = ref_conv(mag_dw, np.abs(pw), np.abs(b))  # sum |x dw pw| over the 27 products, + |b|
    got = run(parse("sepconv3-4s2p1")[0], x, [dw, pw, b])
    assert_close(got, want, mag, 9 + 3 + 1)


def test_zero_padding_layer():
    x = np.arange(6, dtype=np.float32).reshape(2, 3, 1)
    got = run(S.ZeroPad(((0, 1), (2, 0))), x)[:, :, 0]
    assert got.tolist() == [[0, 0, 0, 1, 2], [0, 0, 3, 4, 5], [0, 0, 0, 0, 0]]


def test_activations_are_the_lecture_ones():
    x = np.array([-2.0, -0.5, 0.0, 1.5], np.float32).reshape(1, 4, 1)
    lrelu = run(parse("leakyrelu")[0], x).ravel()
    assert np.allclose(lrelu, [-0.02, -0.005, 0, 1.5], rtol=4 * U, atol=0)
    assert np.allclose(run(parse("leakyrelu0.2")[0], x).ravel(), [-0.4, -0.1, 0, 1.5], rtol=4 * U, atol=0)
    elu = run(parse("elu")[0], x).ravel()
    assert np.allclose(elu, [np.expm1(-2), np.expm1(-0.5), 0, 1.5], rtol=1e-6, atol=0)
    from math import erf, sqrt
    gelu = run(parse("gelu")[0], x).ravel()
    exact = [v * 0.5 * (1 + erf(v / sqrt(2))) for v in (-2.0, -0.5, 0.0, 1.5)]  # exact, not the tanh form
    assert np.allclose(gelu, exact, rtol=1e-5, atol=1e-6)
