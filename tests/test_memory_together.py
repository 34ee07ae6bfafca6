"""The refusal before in-memory data is loaded counts the data and the model's training together:
a data set that fits alone and a model that fits alone, but not both, is refused in one line that
names both parts (before: the data was checked alone, then the model alone, and the run went on)."""
from __future__ import annotations

import re

import numpy as np


def test_data_and_model_that_fit_alone_but_not_together_are_refused_before_loading(tmp_path, invoke, monkeypatch):
    from kerascnn import guard
    from kerascnn.analysis import human_bytes
    from kerascnn.registry import get_entry

    rng = np.random.default_rng(0)
    npz = tmp_path / "d.npz"
    np.savez(npz, x_train=rng.integers(0, 256, (4000, 28, 28), np.uint8), y_train=rng.integers(0, 10, 4000),
             x_test=rng.integers(0, 256, (400, 28, 28), np.uint8), y_test=rng.integers(0, 10, 400))
    monkeypatch.setattr(guard, "resident_bytes", lambda: guard.RUNTIME_PEAK)   # the runtime term: 0, not this RSS
    data = guard.in_memory_bytes(4400 * 28 * 28, 4000, (28, 28), 1, 2.0)
    model = guard.training_bytes(get_entry("convnet").analyze((28, 28, 1), 2), 256, "adam")
    limit = max(data, model) + min(data, model) // 2
    assert data < limit and model < limit < data + model                      # each fits alone, not both
    monkeypatch.setenv("KERASCNN_MEMORY_LIMIT", str(limit))

    r = invoke("train", "convnet", "--data", npz, "--batch-size", "256", "--epochs", "1", "--run-dir", tmp_path / "run")
    assert r.exit_code == 1, r.output
    line = r.output.strip()
    assert "\n" not in line and not (tmp_path / "run").exists()
    assert line == (f"Error: {npz}: in memory this run needs about {human_bytes(data + model)} (the data: "
                    f"{human_bytes(data)} for 4,000 images at 28x28x1 as float32, {human_bytes(4400 * 784)} raw, "
                    f"and the runtime; convnet training at batch 256: {human_bytes(model)}) but only "
                    f"{human_bytes(limit)} is available; use a smaller --image-size or a machine with more memory "
                    f"(an .npz loads whole) or a smaller --batch-size"), line
    assert re.search(r"the data: .*; convnet training at batch 256: ", line)
