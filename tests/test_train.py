"""`kerascnn train`: real accuracy on real data, the run directory, crash-safe resume, NaN, --config."""
import json
import signal

import numpy as np
import pytest

from kerascnn.registry import get_entry

from conftest import kerascnn_in_process, kill_after_epoch, kill_inside_epoch, load_weights, read_history




def test_default_training_on_digits_learns_and_writes_the_run_directory(trained_run):
    for name in ("config.json", "history.csv", "best.keras", "last.keras", "metrics.json", "curves.png",
                 "backup/state.npz"):
        assert (trained_run / name).is_file(), name
    assert any((trained_run / "tb").iterdir())
    cfg = json.loads((trained_run / "config.json").read_text())
    assert cfg["model"] == "convnet" and cfg["input_shape"] == [28, 28, 1] and cfg["num_classes"] == 10
    assert cfg["class_names"] == [str(i) for i in range(10)] and cfg["seed"] == 3
    assert set(cfg["versions"]) >= {"tensorflow", "keras", "python", "kerascnn"}
    assert cfg["train_images"] + cfg["val_images"] == 1438  # 80% of the 1,797 digits, minus nothing
    rows = read_history(trained_run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["final"]["val_accuracy"] > 0.5  # 3 epochs; the full default (30 epochs) reaches ~0.98


@pytest.mark.slow
def test_digits_reach_95_percent_with_the_defaults(tmp_path):
    r = kerascnn_in_process("train", "convnet", "--epochs", "20", "--run-dir", tmp_path / "run", "-q")
    assert r.returncode == 0, r.stderr[-2000:]
    final = json.loads((tmp_path / "run" / "metrics.json").read_text())["final"]
    assert final["val_accuracy"] >= 0.95


R1 = ["train", "convnet", "--epochs", "4", "--seed", "11", "--deterministic", "-q"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """R1's run, uninterrupted (the default --save-every: no save inside its 0.3 s epochs), in this
    process: the SIGKILLed runs below need a process of their own, the runs they are compared with do not."""
    run = tmp_path_factory.mktemp("r1") / "full"
    full = kerascnn_in_process(*R1, "--run-dir", run)
    assert full.returncode == 0, full.stderr[-2000:]
    return run


def test_sigkill_and_resume_equals_an_uninterrupted_run(uninterrupted, tmp_path):
    """R1: SIGKILL after the epoch-2 checkpoint, --resume, and compare with a clean run bitwise."""
    assert kill_after_epoch(2, *R1, "--run-dir", tmp_path / "cut") == -signal.SIGKILL
    assert [int(r["epoch"]) for r in read_history(tmp_path / "cut")] == [1, 2]

    resumed = kerascnn_in_process("train", "--resume", tmp_path / "cut", "-q")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "from epoch 3 (epochs 1-2 done)" in resumed.stdout
    assert [int(r["epoch"]) for r in read_history(tmp_path / "cut")] == [1, 2, 3, 4]
    for a, b in zip(load_weights(uninterrupted / "last.keras"), load_weights(tmp_path / "cut" / "last.keras")):
        assert np.array_equal(a, b)  # bitwise: order = permutation(seed, epoch), state restored exactly


def test_sigkill_inside_an_epoch_and_resume_equals_an_uninterrupted_run(uninterrupted, tmp_path):
    """Issue 25: the state saved every 3 steps (10 per epoch); SIGKILL once it was saved inside an
    epoch after epoch 1; --resume continues at that step: the weights and every history row's
    loss and accuracy equal the uninterrupted run's (which never saved inside an epoch)."""
    cut = tmp_path / "cut"
    meta = kill_inside_epoch(*R1, "--save-every", "3", "--run-dir", cut)
    assert meta and 0 < meta["step"] < 10 and meta["steps"] == 10, meta
    epoch, step = meta["epoch"] + 1, meta["step"]     # 1-based: epochs 1..epoch done, then `step` steps
    assert (epoch * 10 + step) % 3 == 0 and len(meta["history"]) == epoch
    assert meta["totals"][2] == step * 128             # the epoch's running sums: `step` batches counted
    resumed = kerascnn_in_process("train", "--resume", cut, "-q")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (f"from epoch {epoch + 1}, step {step + 1} of 10 (epochs 1-{epoch} and steps 1-{step} of 10 of "
            f"epoch {epoch + 1} done)") in resumed.stdout
    full_rows, cut_rows = read_history(uninterrupted), read_history(cut)
    assert [int(r["epoch"]) for r in cut_rows] == [1, 2, 3, 4]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
        assert [r[key] for r in cut_rows] == [r[key] for r in full_rows], key
    for a, b in zip(load_weights(uninterrupted / "last.keras"), load_weights(cut / "last.keras")):
        assert np.array_equal(a, b)  # bitwise: the stream skips to the step, the state at that step restored


def test_nan_loss_stops_with_one_line_and_keeps_the_last_good_model(tmp_path):
    run = tmp_path / "run"
    ok = kerascnn_in_process("train", "convnet", "--epochs", "2", "--seed", "1", "--run-dir", run, "-q")
    assert ok.returncode == 0
    before = load_weights(run / "last.keras")
    bad = kerascnn_in_process("train", "--resume", run, "--epochs", "4", "--lr", "1e30", "--schedule", "constant",
                              "-q")
    assert bad.returncode == 1
    errors = [l for l in bad.stderr.splitlines() if l.startswith("Error:")]
    assert len(errors) == 1 and "loss became NaN at epoch 3" in errors[0]
    assert "Traceback" not in bad.stderr
    for a, b in zip(before, load_weights(run / "last.keras")):
        assert np.array_equal(a, b)
    assert [int(r["epoch"]) for r in read_history(run)] == [1, 2]
    assert np.load(run / "backup" / "state.npz")["w0"].shape == (3, 3, 1, 32)


def test_config_json_reproduces_the_run(tmp_path):
    first = kerascnn_in_process("train", "lenet5", "--epochs", "2", "--seed", "5", "--deterministic", "--val-split",
                                "0.2", "--run-dir", tmp_path / "a", "-q")
    assert first.returncode == 0, first.stderr[-2000:]
    again = kerascnn_in_process("train", "--config", tmp_path / "a" / "config.json", "--run-dir", tmp_path / "b", "-q")
    assert again.returncode == 0, again.stderr[-2000:]
    sha = [l for l in first.stdout.splitlines() if l.startswith("weights sha256")]
    assert sha and sha == [l for l in again.stdout.splitlines() if l.startswith("weights sha256")]
    cfg = json.loads((tmp_path / "b" / "config.json").read_text())
    assert cfg["val_split"] == 0.2 and cfg["model"] == "lenet5" and cfg["lr"] == 0.01


def test_yaml_config_and_command_line_precedence(tmp_path, invoke):
    from kerascnn.training.merge import resolve_config

    (tmp_path / "c.yaml").write_text("model: convnet\nepochs: 3\nlr: 0.002\nbatch-size: 64\n")
    cfg = resolve_config({"lr": 0.005}, config_file=tmp_path / "c.yaml")
    assert (cfg.epochs, cfg.lr, cfg.batch_size, cfg.optimizer) == (3, 0.005, 64, "adam")
    assert resolve_config({"model": "resnet18"}).optimizer == "sgd"
    (tmp_path / "bad.yaml").write_text("model: convnet\nepoch: 3\n")
    r = invoke("train", "--config", tmp_path / "bad.yaml")
    assert r.exit_code == 2 and "unknown option 'epoch'" in r.output


@pytest.mark.parametrize("args,needle", [
    (["train", "convnet", "--epochs", "0"], "0 is not in the range"),
    (["train", "convnet", "--data", "/no/such.npz"], "does not exist"),
    (["train", "nosuchnet"], "unknown model"),
    (["train", "convnet", "--optimizer", "rmsprop"], "rmsprop"),
    (["train", "convnet", "-o", "wings=1"], "no option"),
    (["train"], "no model given"),
    (["train", "convnet", "--lr", "-1"], "-1"),
    (["train", "convnet", "--dataset", "mnist", "--data", "tests"], "--dataset or --data, not both"),
])
def test_bad_training_arguments_exit_2_with_one_line(invoke, args, needle):
    r = invoke(*args)
    assert r.exit_code == 2, r.output
    assert needle in r.output and "Traceback" not in r.output


def test_resume_and_run_dir_guards(tmp_path, invoke, trained_run):
    r = invoke("train", "--resume", tmp_path)
    assert r.exit_code == 2 and "not a kerascnn run directory" in r.output
    r = invoke("train", "convnet", "--run-dir", trained_run)
    assert r.exit_code == 2 and "already holds a run" in r.output
    r = invoke("train", "lenet5", "--resume", trained_run)
    assert r.exit_code == 2 and "is a convnet run" in r.output


def test_cpu_bfloat16_only_for_models_wide_enough_to_gain():
    """mixed_bfloat16 is the CPU default only where most MACs sit in layers with >= 32 channels."""
    from kerascnn.engines.policy import wide_mac_fraction

    lenet = get_entry("lenet5").analyze()
    convnet = get_entry("convnet").analyze()
    resnet = get_entry("resnet18").analyze((32, 32, 3), 10, small_input=True)
    assert round(wide_mac_fraction(lenet), 3) == round(58_080 / 416_520, 3)   # only the 120/84-wide dense layers
    assert wide_mac_fraction(convnet) > 0.95 and wide_mac_fraction(resnet) > 0.99


def test_npz_run_records_an_absolute_path_and_no_builtin_dataset(tmp_path):
    """--data given relative to the working directory: the run's config works from anywhere."""
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (160, 28, 28), dtype=np.uint8), np.arange(160) % 10
    (tmp_path / "work").mkdir()
    np.savez(tmp_path / "work" / "tiny.npz", x_train=x, y_train=y, x_test=x[:40], y_test=y[:40])
    r = kerascnn_in_process("train", "lenet5", "--data", "tiny.npz", "--epochs", "1", "--batch-size", "32",
                            "--run-dir", tmp_path / "run", "-q", cwd=tmp_path / "work")
    assert r.returncode == 0, r.stderr[-2000:]
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["data"] == str(tmp_path / "work" / "tiny.npz") and cfg["dataset"] is None
    assert cfg["precision_resolved"] == "float32"   # LeNet-5 is too narrow for bf16 to pay on a CPU
    again = kerascnn_in_process("evaluate", tmp_path / "run", "--format", "json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout[again.stdout.index("{"):])["images"] == 40
