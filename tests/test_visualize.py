"""Every picture kind renders from a run trained by `kerascnn train`, headless, non-blank."""
import importlib.util
import shutil

import numpy as np
import pytest


def _check_png(path, min_side=200):
    from PIL import Image

    assert path.is_file() and path.stat().st_size > 5_000, path
    with Image.open(path) as im:
        assert im.format == "PNG" and min(im.size) >= min_side
        a = np.asarray(im.convert("L"), dtype=np.float32)
    assert a.std() > 10, "blank picture"


@pytest.mark.parametrize("kind,extra", [
    ("filters", []), ("filters", ["--layer", "conv2d_1"]), ("activations", ["--index", "3"]),
    ("mistakes", []), ("curves", []), ("confusion", []), ("receptive-field", []),
    ("receptive-field", ["--layer", "conv2d_1"]),
])
def test_each_kind_renders_from_a_trained_run(invoke, trained_run, tmp_path, kind, extra):
    out = tmp_path / f"{kind}.png"
    r = invoke("visualize", kind, trained_run, "--out", out, *extra)
    assert r.exit_code == 0, r.output
    _check_png(out)


def test_edges_and_rgb_filters_and_blocks(invoke, tmp_path):
    r = invoke("visualize", "edges", "--out", tmp_path / "edges.png")
    assert r.exit_code == 0, r.output
    _check_png(tmp_path / "edges.png")
    r = invoke("visualize", "filters", "alexnet", "--out", tmp_path / "rgb.png")   # 96 RGB 11x11 kernels
    assert r.exit_code == 0, r.output
    _check_png(tmp_path / "rgb.png")
    r = invoke("visualize", "activations", "googlenet", "--out", tmp_path / "g.png", "--max-maps", "4")
    assert r.exit_code == 0, r.output                                        # Inception blocks as layers
    _check_png(tmp_path / "g.png")


def test_receptive_field_geometry_matches_the_analysis():
    from kerascnn.registry import get_entry
    from kerascnn.visualize import _geometry_to

    for name, layer in (("convnet", "max_pooling2d_1"), ("resnet18", "conv3_block2"), ("vgg16", "block5_pool")):
        entry = get_entry(name)
        rows = {r.name: r for r in entry.analyze().layers}
        sizes = {n: r.output_shape[0] for n, r in rows.items() if len(r.output_shape) == 3}
        rf, jump, start = _geometry_to(entry.specs(), entry.default_input[0], layer, sizes)
        assert (rf, jump) == (rows[layer].receptive_field, rows[layer].jump), name
    assert _geometry_to(get_entry("convnet").specs(), 28, "max_pooling2d_1")[2] == 4.5  # centre of unit 0


def test_architecture_needs_graphviz_or_draws(invoke, tmp_path):
    r = invoke("visualize", "architecture", "convnet", "--out", tmp_path / "a.png")
    if importlib.util.find_spec("pydot") and shutil.which("dot"):
        assert r.exit_code == 0
        _check_png(tmp_path / "a.png", min_side=100)
    else:
        assert r.exit_code == 2 and "pip install pydot" in r.output and "graphviz" in r.output
        assert not (tmp_path / "a.png").exists()


@pytest.mark.parametrize("args,needle", [
    (["visualize", "filters", "--out", "x.png"], "needs MODEL_OR_RUN"),
    (["visualize", "filters", "convnet", "--layer", "dense", "--out", "x.png"], "not a Conv2D"),
    (["visualize", "filters", "convnet", "--layer", "nope", "--out", "x.png"], "no layer 'nope'"),
    (["visualize", "curves", "convnet", "--out", "x.png"], "needs a run directory"),
    (["visualize", "sparkles", "convnet", "--out", "x.png"], "sparkles"),
    (["visualize", "activations", "convnet", "--index", "99999", "--out", "x.png"], "outside"),
])
def test_visualize_bad_input(invoke, args, needle):
    r = invoke(*args)
    assert r.exit_code == 2 and needle in r.output and "Traceback" not in r.output


def test_sobel_pair_is_the_lectures():
    """Lecture 000: Gx = [[-1,0,+1],[-2,0,+2],[-1,0,+1]], Gy = [[+1,+2,+1],[0,0,0],[-1,-2,-1]]."""
    from kerascnn.visualize import SOBEL_X, SOBEL_Y, sobel

    np.testing.assert_array_equal(SOBEL_Y, [[1, 2, 1], [0, 0, 0], [-1, -2, -1]])
    np.testing.assert_array_equal(SOBEL_X, [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    # a bright top half over a dark bottom half (a horizontal edge): Gy = +4 on the edge rows, Gx = 0
    img = np.zeros((1, 6, 5, 1), np.float32)
    img[0, :3] = 1.0
    g = sobel(img)[0]
    np.testing.assert_array_equal(g[..., 1], [[0, 0, 0], [4, 4, 4], [4, 4, 4], [0, 0, 0]])
    np.testing.assert_array_equal(g[..., 0], np.zeros((4, 3)))
    # dark left, bright right (a vertical edge): Gx = +4, Gy = 0
    img = np.zeros((1, 5, 6, 1), np.float32)
    img[0, :, 3:] = 1.0
    g = sobel(img)[0]
    np.testing.assert_array_equal(g[..., 0], [[0, 4, 4, 0]] * 3)
    np.testing.assert_array_equal(g[..., 1], np.zeros((3, 4)))
