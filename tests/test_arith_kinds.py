"""The layer kinds real models use and the lectures draw (transposed convolution, up-sampling,
cropping, LayerScale, Rescaling, Normalization), the spec language's edges, and the import layering
of the arithmetic: each checked by hand and against Keras's own count_params()."""
import ast
import json
from pathlib import Path

import numpy as np
import pytest

import kerascnn
from kerascnn import analysis
from kerascnn.errors import ConfigError
from kerascnn.speclang import parse, to_text

from test_vocabulary import keras_agrees


def one(text, shape):
    return analysis.analyze(parse(text), shape).layers[0]


def test_transposed_convolution_arithmetic_and_keras_counts():
    """PyTorch's out = (H-1)S - 2P + d(F-1) + output_padding + 1; params F F C K + K; every input
    pixel meets the whole kernel (fvcore's count); a 4x4/2 P1 doubles the size (DCGAN, U-Net)."""
    row = one("tconv4-16s2p1", (8, 8, 32))
    assert row.output_shape == (16, 16, 16)                 # (8-1)*2 - 2 + 4 = 16
    assert (row.params, row.macs) == (4 * 4 * 32 * 16 + 16, 8 * 8 * 32 * 16 * 4 * 4)
    assert one("tconv3-8s2p1o1", (7, 7, 4)).output_shape == (14, 14, 8)
    assert one("tconv3-8d2", (5, 5, 4)).output_shape == (9, 9, 8)   # (5-1) + 2*2 + 1
    # each output of a 3x3/2 transposed convolution sees at most 2 inputs per axis; 4x4/2 also 2
    assert (row.receptive_field, row.jump) == (2, 0.5)
    assert one("tconv3-8s2", (5, 5, 4)).receptive_field == 2
    assert one("tconv2-8s2", (5, 5, 4)).receptive_field == 1       # no overlap: one input per output
    r = analysis.analyze(parse("conv3-8s2p1, tconv4-8s2p1"), (16, 16, 3))
    assert r.layers[-1].output_shape == (16, 16, 8) and r.layers[-1].jump == 1
    keras_agrees(parse("tconv4-16s2p1, relu, tconv3-8s2p1o1nb, tconv3-4"), (6, 6, 3))
    with pytest.raises(ConfigError, match="smaller than the stride"):
        analysis.analyze(parse("tconv3-8s2o2"), (4, 4, 1))


def test_upsampling_cropping_and_the_shape_only_layers():
    up = one("up2", (7, 5, 3))
    assert (up.output_shape, up.params, up.receptive_field, up.jump) == ((14, 10, 3), 0, 1, 0.5)
    assert one("up2bilinear", (4, 4, 1)).receptive_field == 2   # two neighbours per output
    crop = one("crop1x2", (8, 8, 3))
    assert (crop.output_shape, crop.receptive_field) == ((6, 4, 3), 1)
    assert one("crop0:1x2:0", (8, 8, 3)).output_shape == (7, 6, 3)
    ls, rs, nm = (one(t, (4, 4, 8)) for t in ("layerscale", "rescale/255", "norm"))
    assert (ls.params, ls.trainable_params) == (8, 8)
    assert (rs.params, nm.params, nm.trainable_params) == (0, 2 * 8 + 1, 0)   # mean, variance, count
    # U-Net's skip: the encoder map cropped to the size of the up-sampled decoder map, concatenated
    r = analysis.analyze(parse("conv3-8p1, cat(crop2 | maxpool2, conv3-8, up2), conv3-4"), (12, 12, 1))
    assert r.layers[1].output_shape == (8, 8, 16) and r.layers[1].receptive_field == 3 + 1 + 2 * 2
    keras_agrees(parse("rescale/127.5-1, norm, conv3-8p1, layerscale, up2, crop1, up2bilinear, conv3-4"), (8, 8, 3))
    with pytest.raises(ConfigError, match="leaves nothing"):
        analysis.analyze(parse("crop2"), (4, 4, 1))


def test_batchnorm_tokens_without_scale_or_center():
    r = analysis.analyze(parse("bn_noscale, bn_eps0.001_nocenter_noscale, ln_nocenter, gn2_noscale"), (4, 4, 8))
    assert [(l.params, l.trainable_params) for l in r.layers] == [(24, 8), (16, 0), (8, 8), (8, 8)]
    keras_agrees(parse("bn_noscale, bn_eps0.001_nocenter_noscale, ln_nocenter, gn2_noscale"), (4, 4, 8))


@pytest.mark.parametrize("text", ["tconv4-16s2p1o1d2nb", "up3bilinear", "crop0:1x2:3", "layerscale",
                                  "rescale/255", "rescale/127.5-1", "rescale2+0.5", "norm", "bn_noscale",
                                  "bn_eps0.001_nocenter", "maxpool3s2p1ceil", "maxpool3s1p1d2", "avgpool3s2ceil"])
def test_new_tokens_read_back(text):
    specs = parse(text)
    assert parse(to_text(specs)) == specs and to_text(specs) == text


def test_padding_given_twice_names_the_conflict():
    """`conv3-8p1same` once said "modifier 'same' given twice"; the conflict is p1 against same."""
    with pytest.raises(ConfigError, match="'p1' and 'same' conflict"):
        parse("conv3-8p1same")
    with pytest.raises(ConfigError, match="'valid' and 'p2' conflict"):
        parse("maxpool3validp2")
    with pytest.raises(ConfigError, match="'s3' given twice"):
        parse("conv3-8s2s3")


def test_a_pure_mlp_has_no_receptive_field(invoke):
    r = analysis.analyze(parse("flatten, fc100, relu, fc10"), (28, 28, 1))
    assert r.receptive_field is None and r.to_dict()["receptive_field"] is None
    out = invoke("summary", "flatten, fc100, relu, fc10", "--input-shape", "28,28,1", "--no-keras").output
    assert "Receptive field: none (no layer sees a spatial grid)" in out and "1 px" not in out
    assert analysis.analyze(parse("conv3-4, flatten, fc10"), (8, 8, 1)).receptive_field == 3


def test_summary_prints_the_arithmetic_before_why_keras_cannot_build_it(invoke):
    """Keras refuses stride > 1 with dilation > 1; the summary shows the arithmetic, then the reason
    (before: only an error pointing at "the arithmetic above", never printed)."""
    r = invoke("summary", "conv3-8s2d2", "--input-shape", "32,32,3")
    assert r.exit_code == 2
    lines = r.output.splitlines()
    error = [i for i, line in enumerate(lines) if line.startswith("Error:")]
    table = [i for i, line in enumerate(lines) if line.startswith("conv2d")]
    assert len(error) == 1 and table and table[0] < error[0]
    assert "14x14x8" in lines[table[0]] and "Keras cannot build" in lines[error[0]]
    assert "kerascnn values" in lines[error[0]]


def test_one_row_input_is_a_1d_signal(invoke):
    """Lecture 1-D examples: a one-row grid is 1xW (it was read as a vector and refused)."""
    r = invoke("values", "conv1x3-1", "--input", "1,2,-1,1,-3", "--kernel", "1,0,-1", "--format", "json")
    assert r.exit_code == 0, r.output
    x = np.array([1, 2, -1, 1, -3])
    want = [x[i] - x[i + 2] for i in range(3)]
    assert json.loads(r.output)["layers"][-1]["values"] == [[want]] == [[[2, 1, 2]]]
    r = invoke("values", "conv3-1", "--input", "1,2,-1,1,-3")
    assert r.exit_code == 2 and "a one-row input is a 1-D signal" in r.output


def test_reports_and_value_grids_render_as_html():
    report = kerascnn.analyze("conv3-4p1, maxpool2", input_shape=(8, 8, 1))
    html = report._repr_html_()
    assert html.count("<tr>") == 1 + 2 and "<th" in html and "max_pooling2d" in html
    assert "Multiply-adds per image: 2,304" in html and "Lecture arithmetic" in str(report)
    grid = kerascnn.layer_values("maxpool2", "1,1,2,4; 5,6,7,8; 3,2,1,0; 1,2,3,4")
    g = grid._repr_html_()
    assert g.count("<tr>") == 2 and ">6</td>" in g and ">8</td>" in g and ">4</td>" in g
    assert grid[-1].values[..., 0].tolist() == [[6, 8], [3, 4]] and "max_pooling2d" in str(grid)


# -------------------------------------------------------------------- import layering (issue 20)
ARITHMETIC = ("specs", "rules", "analysis", "speclang", "report", "keras_config", "keras_analysis", "values")


def _imports(path: Path) -> set:
    """Every kerascnn module a file imports, at top level or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kerascnn"):
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("kerascnn"))
    return out


def _graph() -> dict:
    pkg = Path(kerascnn.__file__).parent
    modules = {}
    for f in pkg.rglob("*.py"):
        parts = f.relative_to(pkg.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    # the root package's own imports sit inside its API functions: importing kerascnn.x never runs them
    return {m: {i for i in _imports(f) if i in modules and i not in (m, "kerascnn")} for m, f in modules.items()}


def test_no_import_cycle_through_the_rules_and_the_keras_builders():
    """rules -> layers -> keras_build -> rules was a cycle (lazy imports included); the rules now
    import only the leaf exact_layers, and the builders import the rules."""
    graph = _graph()
    mine = {m for m in graph if m.startswith(("kerascnn.rules", "kerascnn.layers", "kerascnn.keras_build",
                                                "kerascnn.exact_layers", "kerascnn.analysis",
                                                "kerascnn.keras_analysis", "kerascnn.keras_config"))}

    def reaches(start, goal, seen=None):
        seen = seen if seen is not None else set()
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and not seen.add(nxt) and reaches(nxt, goal, seen)):
                return True
        return False

    rules = {m for m in graph if m.startswith("kerascnn.rules")}
    cycles = [m for m in mine if reaches(m, m) and not (m in rules and _only_within(graph, m, rules))]
    assert not cycles, cycles
    assert "kerascnn.layers" not in {i for m in rules for i in graph[m]}
    assert graph["kerascnn.exact_layers"] == set()


def _only_within(graph, module, group) -> bool:
    """A package's __init__ importing its own submodules (and they their siblings) is not a cycle."""
    return all(i in group for m in group for i in graph[m])


def test_the_arithmetic_imports_no_tensorflow_or_keras_at_module_level():
    pkg = Path(kerascnn.__file__).parent
    for name in ARITHMETIC:
        path = pkg / (name if (pkg / name).is_dir() else f"{name}.py")
        for f in ([*path.glob("*.py")] if path.is_dir() else [path]):
            top = ast.parse(f.read_text()).body
            mods = {a.name.split(".")[0] for n in top if isinstance(n, ast.Import) for a in n.names}
            mods |= {n.module.split(".")[0] for n in top if isinstance(n, ast.ImportFrom) and n.module}
            assert not mods & {"tensorflow", "keras", "jax"}, (f, mods)
