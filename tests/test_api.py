"""The Python API (kerascnn.train / evaluate / predict / export / load_run, issue 23) and the one
run record every reader uses (issue 20): the README's example runs as written, and evaluate,
visualize and export read a run's options through RunRecord, never with defaults of their own."""
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from images import labelled_folder

ROOT = Path(__file__).resolve().parents[1]


def readme_python_api() -> str:
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- python-api -->", 1)[1].split("<!-- /python-api -->", 1)[0]
    return re.search(r"```python\n(.*?)```", block, re.S).group(1)


@pytest.mark.slow
def test_the_readme_python_example_runs_as_written(tmp_path, monkeypatch, capsys):
    shutil.copytree(ROOT / "docs" / "samples", tmp_path / "docs" / "samples")
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(readme_python_api(), "README.md (python-api)", "exec"), scope)
    run, ev, preds, exp = scope["run"], scope["ev"], scope["preds"], scope["exp"]
    assert run.dir == Path("runs/nb") and run.record.config.seed == 1 and len(run.history) == 3
    assert [e.epoch for e in run.history] == [1, 2, 3] and run.history[-1].val_accuracy > 0.3
    assert run.weights_sha256 == run.metrics["weights_sha256"] and len(run.weights_sha256) == 64
    assert "Epoch" not in capsys.readouterr().out                      # quiet=True: no progress, no lines
    # the CLI's numbers, from the same code
    assert ev.confusion.shape == (10, 10) and ev.confusion.sum() == ev.images == 359
    assert ev.accuracy == pytest.approx(np.trace(ev.confusion) / 359)
    assert json.loads((run.dir / "eval-digits-test" / "metrics.json").read_text())["accuracy"] == ev.accuracy
    assert len(preds) == 1 and len(preds[0]["top"]) == 3 and preds.classes[0] == preds[0]["top"][0]["class"]
    assert exp.path == Path("saved_models/nb") and (exp.path / "saved_model.pb").is_file()
    assert exp.max_abs_diff <= 1e-5 or exp.as_dict()["tolerance"] == 1e-2
    # a run read back is the same run; every result renders as text and as HTML
    again = __import__("kerascnn").load_run("runs/nb")
    assert again.record.to_dict() == run.record.to_dict() and again.history == run.history
    assert again.metrics == run.metrics
    for obj in (run, ev, preds, exp):
        assert repr(obj).startswith(type(obj).__name__ + "(") and "<table>" in obj._repr_html_()
    assert "data:image/png;base64," in run._repr_html_() and "data:image/png;base64," in ev._repr_html_()
    assert repr(run).startswith("Run(runs/nb: convnet, 3 epoch(s), val_accuracy ")
    # the same predictions from the export, by its Export object
    from_export = __import__("kerascnn").predict(exp, ["docs/samples/digit-3.png"], top_k=3)
    assert from_export.classes == preds.classes


def test_api_options_are_checked_before_anything_runs(tmp_path):
    import kerascnn
    from kerascnn.errors import ConfigError

    with pytest.raises(ConfigError, match=r"unknown option 'lerning_rate' \(did you mean 'lr'\?\)"):
        kerascnn.train("convnet", lerning_rate=0.1, run_dir=tmp_path / "a")
    with pytest.raises(ConfigError, match="epochs must be an integer >= 1; received 0"):
        kerascnn.train("convnet", epochs=0, run_dir=str(tmp_path / "a"))
    with pytest.raises(ConfigError, match="unknown model"):
        kerascnn.train("nosuchnet")
    assert not (tmp_path / "a").exists()
    with pytest.raises(Exception, match="no such file"):
        kerascnn.load_run(tmp_path)


def _folder(root, n=40):
    """Two classes of 8x8 gray PNGs, no train/test sub-folders: the test split is drawn by the seed."""
    rng = np.random.default_rng(0)
    images = [(rng.random((8, 8)) * 120 + 120 * (i % 2)).astype(np.uint8) for i in range(n)]
    return labelled_folder(root, images, [i % 2 for i in range(n)], "ab", name="{i:02d}")


@pytest.mark.slow
def test_readers_use_the_runs_options_and_the_training_defaults(tmp_path, invoke):
    """Trained with the default seed (1234) on a folder whose test split the seed draws: a model
    file read without its run directory is evaluated and pictured on the same held-out images as
    the run (main read seed 0 there: part of its "test" split was training data), and export,
    evaluate and visualize all read the run through its RunRecord."""
    import kerascnn
    from kerascnn import visualize as V
    from kerascnn.runs import resolve_model

    data, run = _folder(tmp_path / "imgs"), tmp_path / "run"
    r = invoke("train", "convnet", "--data", data, "--epochs", "1", "--batch-size", "8", "--run-dir", run, "-q")
    assert r.exit_code == 0, r.output
    assert kerascnn.load_run(run).record.config.seed == 1234 == json.loads((run / "config.json").read_text())["seed"]
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(run / "best.keras", alone / "best.keras")
    with_run = json.loads(invoke("evaluate", run, "--format", "json").output)
    without = json.loads(invoke("evaluate", alone / "best.keras", "--data", data, "--format", "json",
                                "--out", tmp_path / "ev").output)
    assert without["images"] == with_run["images"] == 8
    assert without["loss"] == with_run["loss"] and without["confusion_matrix"] == with_run["confusion_matrix"]
    _, rec_run = resolve_model(str(run))
    _, rec_alone = resolve_model(str(alone / "best.keras"))
    assert rec_alone.config.seed == 1234 and rec_alone.run_dir is None
    shown_run = V._data_for(rec_run, None, None)
    shown_alone = V._data_for(rec_alone, None, str(data))
    assert np.array_equal(shown_run.x_test, shown_alone.x_test) and np.array_equal(shown_run.y_test,
                                                                                  shown_alone.y_test)
    out = tmp_path / "export"
    assert invoke("export", run, "--out", out).exit_code == 0
    meta = json.loads((out / "kerascnn.json").read_text())
    assert (meta["model"], meta["class_names"], meta["input_shape"]) == ("convnet", ["a", "b"], [28, 28, 1])
