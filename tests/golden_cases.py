"""The golden-file cases: what users read in `kerascnn list` and `kerascnn summary` tables.

Each case is a file name under tests/golden/ and the CLI arguments that produce it (or a function
returning the text, for the Python API on a Keras model).
After an intended change, regenerate every file with::

    python -m tests.regen_golden

and review the diff (`git diff tests/golden`) before committing it.
"""
from __future__ import annotations

from pathlib import Path

GOLDEN_DIR = Path(__file__).parent / "golden"

CASES = {
    "list.txt": ["list"],
    "summary_convnet.txt": ["summary", "convnet", "--no-keras"],
    "summary_lenet5.txt": ["summary", "lenet5", "--no-keras"],
    "summary_alexnet_grouped.txt": ["summary", "alexnet", "-o", "grouped=true", "--no-keras"],
    "summary_resnet18.txt": ["summary", "resnet18", "--no-keras"],
    "summary_googlenet_depth1.txt": ["summary", "googlenet", "--no-keras", "--depth", "1"],
    "summary_vgg16.txt": ["summary", "vgg16", "--no-keras"],
    "summary_spec_stride2.txt": ["summary", "conv3-64s2p1, maxpool3s2p1, conv3-64p1nb, bn, relu, gap, fc10",
                                "--input-shape", "32,32,3", "--no-keras"],
}


def two_branches() -> str:
    """`print(kerascnn.analyze(model))` for the README's functional two-branch model."""
    import keras

    import kerascnn

    inp = keras.Input((32, 32, 3), name="image")
    a = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv3x3")(inp)
    b = keras.layers.Conv2D(16, 5, padding="same", name="conv5x5")(inp)
    x = keras.layers.Add(name="add")([a, b])
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inp, keras.layers.Dense(10, name="fc")(x), name="two_branches")
    return str(kerascnn.analyze(model)) + "\n"


CASES["analyze_two_branches.txt"] = two_branches


def render(args) -> str:
    """Run the CLI in-process and return its output (exit code must be 0)."""
    if callable(args):
        return args()
    from click.testing import CliRunner

    from kerascnn.cli import cli

    result = CliRunner().invoke(cli, list(args))
    if result.exit_code != 0:
        raise RuntimeError(f"kerascnn {' '.join(args)} failed ({result.exit_code}): {result.output}")
    return result.output
