"""The README's main commands, exactly as written, on a machine with no network:
train on the bundled digits, evaluate, export, predict from the export."""
import json
import re
from pathlib import Path

import pytest

from conftest import kerascnn_in_process

README = Path(__file__).resolve().parents[1] / "README.md"


def quickstart_commands():
    text = README.read_text()
    block = text.split("<!-- quickstart -->", 2)[1]
    return [line.strip() for line in re.findall(r"^kerascnn .*$", block, re.M)]


@pytest.mark.slow
def test_readme_quickstart_trains_evaluates_and_exports_offline(tmp_path):
    commands = quickstart_commands()
    assert [c.split()[1] for c in commands] == ["train", "evaluate", "export"]
    outputs = []
    for command in commands:
        r = kerascnn_in_process(*command.split()[1:], cwd=tmp_path)
        assert r.returncode == 0, (command, r.stderr[-2000:])
        outputs.append(r.stdout)
    run = tmp_path / "runs" / "quickstart"
    test = json.loads((run / "eval-digits-test" / "metrics.json").read_text())
    assert test["accuracy"] >= 0.95  # measured 0.9666 (seed 1234) both in mixed_bfloat16 (AVX512_BF16) and in float32 (AVX2)
    assert (tmp_path / "saved_models" / "quickstart" / "saved_model.pb").is_file()
    assert "max |diff| vs Keras 0" in outputs[2]
