"""`kerascnn values`: the lectures' worked examples come out of the built Keras layers."""
import json

import numpy as np
import pytest

from kerascnn import values as V


def _values(invoke, *args):
    r = invoke("values", *args, "--format", "json")
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def _channel0(invoke, *args):
    return np.array(_values(invoke, *args)["layers"][-1]["values"][0])


def test_lecture_max_pool_example(invoke):
    """Lectures 001/004: 2x2 max pooling, stride 2, on the 4x4 grid -> [[6, 8], [3, 4]]."""
    r = invoke("values", "maxpool2", "--input", "1,1,2,4; 5,6,7,8; 3,2,1,0; 1,2,3,4")
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[-2:] == ["6  8", "3  4"]


def test_lecture_two_channel_cross_correlation(invoke):
    """Lecture 000, Fig. 7.4.1 (Dive into Deep Learning): two input channels, one 2x2x2 kernel."""
    out = _channel0(invoke, "conv2-1", "--input", "0,1,2;3,4,5;6,7,8 | 1,2,3;4,5,6;7,8,9",
                    "--kernel", "0,1;2,3 | 1,2;3,4")
    np.testing.assert_array_equal(out, [[56, 72], [104, 120]])


def test_five_by_five_input_three_by_three_kernel(invoke):
    """The 5x5 binary image and 3x3 kernel of the convolution animation (UFLDL / the anhreynolds
    page lecture 000 cites): 3x3 output [[4,3,4],[2,4,3],[2,3,4]]; a bias of 1 adds 1."""
    img = "1,1,1,0,0; 0,1,1,1,0; 0,0,1,1,1; 0,0,1,1,0; 0,1,1,0,0"
    out = _channel0(invoke, "conv3-1", "--input", img, "--kernel", "1,0,1;0,1,0;1,0,1")
    np.testing.assert_array_equal(out, [[4, 3, 4], [2, 4, 3], [2, 3, 4]])
    out = _channel0(invoke, "conv3-1", "--input", img, "--kernel", "1,0,1;0,1,0;1,0,1", "--bias", "1")
    np.testing.assert_array_equal(out, [[5, 4, 5], [3, 5, 4], [3, 4, 5]])


def test_stride_and_padding_follow_the_lecture_formula(invoke):
    """Issue 12: conv3-1s2p1nb, ones kernel, 4x4 arange(16) -> [[10,24],[51,90]] (P on every side);
    lecture 001: a 7x7 input, 3x3 filter, stride 2 -> 3x3; lecture 000's zero-padding picture."""
    np.testing.assert_array_equal(_channel0(invoke, "conv3-1s2p1nb", "--input", "arange:4x4"),
                                  [[10, 24], [51, 90]])
    x = np.arange(49, dtype=np.float32).reshape(7, 7)
    want = [[x[i:i + 3, j:j + 3].sum() for j in (0, 2, 4)] for i in (0, 2, 4)]
    np.testing.assert_array_equal(_channel0(invoke, "conv3-1s2", "--input", "arange:7x7"), want)
    padded = _channel0(invoke, "conv1-1p1", "--input", "35,19,25,6; 13,22,16,53; 4,3,7,10; 9,8,1,3")
    assert padded.shape == (6, 6) and padded[1, 1:5].tolist() == [35, 19, 25, 6]
    assert padded[0].sum() == padded[-1].sum() == padded[:, 0].sum() == padded[:, -1].sum() == 0


@pytest.mark.parametrize("f,s,p,n", [(3, 2, 1, 5), (5, 3, 2, 8), (2, 2, 0, 7), (1, 2, 0, 6)])
def test_values_equal_numpy_cross_correlation(f, s, p, n):
    """The built layer computes sum over the window of the zero-padded input times the kernel."""
    rng = np.random.default_rng(f * 100 + n)
    x = rng.integers(-5, 6, size=(n, n, 2)).astype(np.float32)
    k = rng.integers(-3, 4, size=(f, f, 2, 1)).astype(np.float32)
    outs, _ = V.run_values(f"conv{f}-1s{s}p{p}", x, kernel=k, bias=np.array([0.5], np.float32))
    xp = np.pad(x, ((p, p), (p, p), (0, 0)))
    m = (n - f + 2 * p) // s + 1
    want = np.array([[(xp[i * s:i * s + f, j * s:j * s + f] * k[..., 0]).sum() + 0.5 for j in range(m)]
                     for i in range(m)])
    np.testing.assert_array_equal(outs[-1][2][..., 0], want)  # small integers + 0.5: exact in float32


def test_inputs_kernels_and_weights_from_files(invoke, tmp_path):
    x = np.arange(16, dtype=np.float32).reshape(4, 4)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "k.npy", np.array([[1, 0], [0, -1]], np.float32))
    out = _channel0(invoke, "conv2-1", "--input", tmp_path / "x.npy", "--kernel", tmp_path / "k.npy")
    np.testing.assert_array_equal(out, np.full((3, 3), -5.0))  # x[i,j] - x[i+1,j+1] = -5
    np.savez(tmp_path / "w.npz", **{"conv2d/kernel": np.full((2, 2, 1, 1), 2, np.float32),
                                   "conv2d/bias": np.array([1], np.float32)})
    out = _channel0(invoke, "conv2-1", "--input", tmp_path / "x.npy", "--weights", tmp_path / "w.npz")
    np.testing.assert_array_equal(out, [[2 * (x[i:i + 2, j:j + 2].sum()) + 1 for j in range(3)] for i in range(3)])
    d = _values(invoke, "conv2-2, flatten, fc3", "--input", "arange:3x3", "--each-layer")
    assert [l["name"] for l in d["layers"]] == ["conv2d", "flatten", "dense"]
    # ones everywhere: each conv output is a 2x2 window sum, each dense output the sum of all 8
    sums = [[8, 12], [20, 24]]
    assert d["layers"][0]["values"] == [sums, sums]
    assert d["layers"][2]["values"] == [2 * 64.0] * 3


def test_values_of_a_saved_keras_model(invoke, tmp_path):
    from kerascnn.keras_build import build_sequential
    from kerascnn.speclang import parse

    model = build_sequential(parse("conv2-1, maxpool2"), (5, 5, 1))
    model.get_layer("conv2d").set_weights([np.array([[[[1]], [[-1]]], [[[0]], [[0]]]], np.float32),
                                           np.array([0.5], np.float32)])
    model.save(tmp_path / "m.keras")
    out = _channel0(invoke, tmp_path / "m.keras", "--input", "arange:5x5")
    np.testing.assert_array_equal(out, [[-0.5, -0.5], [-0.5, -0.5]])  # x[i,j] - x[i,j+1] + 0.5 = -0.5
    out = _channel0(invoke, "conv2-1", "--input", "arange:5x5", "--weights", tmp_path / "m.keras")
    np.testing.assert_array_equal(out, np.full((4, 4), -0.5))


@pytest.mark.parametrize("args,message", [
    (("conv3-1", "--input", "1,2;3"), "same number of values"),
    (("conv3-1", "--input", "arange:4x4", "--kernel", "1,2;3,4"), "needs (3, 3, 1, 1)"),
    (("conv3-1", "--input", "a,b;c,d"), "must be numbers"),
    (("maxpool2", "--input", "arange:4x4", "--kernel", "1"), "need a layer with a kernel"),
    (("conv3-1", "--input", "arange:2x2"), "collapses"),
])
def test_bad_values_input_is_one_line(invoke, args, message):
    r = invoke("values", *args)
    assert r.exit_code == 2 and "Traceback" not in r.output
    error = [l for l in r.output.splitlines() if l.startswith("Error:")]
    assert len(error) == 1 and message in error[0], r.output
