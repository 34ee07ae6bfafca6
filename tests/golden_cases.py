"""The golden-file cases: what users read in `kerascnn list` and `kerascnn summary` tables.

Each case is a file name under tests/golden/ and the CLI arguments that produce it.
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


def render(args) -> str:
    """Run the CLI in-process and return its output (exit code must be 0)."""
    from click.testing import CliRunner

    from kerascnn.cli import cli

    result = CliRunner().invoke(cli, list(args))
    if result.exit_code != 0:
        raise RuntimeError(f"kerascnn {' '.join(args)} failed ({result.exit_code}): {result.output}")
    return result.output
