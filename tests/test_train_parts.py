"""The training path's parts (issues 11, 20): the typed configuration and the run record, the
checkpoint's one-line refusals, the start-up line, the TensorFlow engine behind the Engine contract."""
import json

import numpy as np
import pytest


def test_the_config_is_frozen_and_its_declarations_are_the_click_options():
    import click

    from kerascnn.commands.train import train
    from kerascnn.errors import ConfigError
    from kerascnn.training.config import Optimizer, Schedule, TrainConfig, choices

    cfg = TrainConfig(model="convnet", optimizer="sgd", image_size=[16, 16])
    assert cfg.optimizer == Optimizer.SGD == "sgd" and cfg.image_size == (16, 16)
    with pytest.raises(Exception):
        cfg.lr = 1.0                                              # frozen
    with pytest.raises(ConfigError, match="schedule must be one of constant, cosine, onecycle; received 'linear'"):
        TrainConfig(model="convnet", schedule="linear")
    params = {p.name: p for p in train.params}
    assert list(params["optimizer"].type.choices) == choices(Optimizer) == ["sgd", "adam", "adamw"]
    assert list(params["schedule"].type.choices) == choices(Schedule)
    assert isinstance(params["class_names"].type, click.types.StringParamType)
    # every option of the command is a field of the config (its long option with "_"), and back
    fields = {name for name, _, opt in TrainConfig.fields() if opt.cli}
    assert set(params) - {"model", "config_file", "resume", "quiet"} == fields
    assert params["epochs"].type.min == 1 and params["epochs"].type.max == 100_000
    assert params["weights_preprocessing"].opts == ["--preprocessing", "--weights-preprocessing"]
    assert all(p.default is None for name, p in params.items() if name in fields - {"model_options"})


def test_an_old_config_json_still_reads_and_round_trips(tmp_path):
    from kerascnn.training.record import RunRecord

    old = {"model": "convnet", "model_options": {}, "dataset": "digits", "data": None, "image_size": None,
           "epochs": 3, "batch_size": 128, "optimizer": "adam", "lr": 0.001, "schedule": "cosine", "seed": 3,
           "input_shape": [28, 28, 1], "num_classes": 3, "class_names": ["a", "b", "c"], "pixel_scale": 0.5,
           "versions": {"tensorflow": "2.21.0"}, "strategy_resolved": "default", "kerascnn_command": "kerascnn x"}
    (tmp_path / "config.json").write_text(json.dumps(old))
    rec = RunRecord.load(tmp_path)
    assert (rec.input_shape, rec.num_classes, rec.class_names, rec.pixel_scale) == ((28, 28, 1), 3,
                                                                                   ["a", "b", "c"], 0.5)
    assert rec.preprocessing == {"input_shape": [28, 28, 1], "pixel_scale": 0.5}
    assert rec.config.epochs == 3 and rec.config.seed == 3 and rec.changes == [] and rec.run_dir == tmp_path
    assert rec.config.backend is None                              # no engine recorded: none assumed
    again = rec.to_dict()
    assert {k: again[k] for k in old} == old                      # nothing lost, nothing altered
    # an option that does not read keeps its default; the others are kept (strict: one line naming the file)
    (tmp_path / "config.json").write_text(json.dumps(dict(old, lr="fast")))
    rec = RunRecord.load(tmp_path)
    assert rec.config.lr == 1e-3 and rec.config.seed == 3 and rec.config.epochs == 3
    from kerascnn.errors import DataError

    with pytest.raises(DataError, match=r"config.json: the recorded options do not read \(lr must be a number"):
        RunRecord.load(tmp_path, strict=True)


def test_class_names_option_parses_files_and_lists(tmp_path):
    from kerascnn.data import parse_class_names
    from kerascnn.errors import ConfigError

    (tmp_path / "names.txt").write_text("cat\ndog\n\nbird\n")
    assert parse_class_names(str(tmp_path / "names.txt")) == ["cat", "dog", "bird"]
    assert parse_class_names("a, b,c") == ["a", "b", "c"]
    with pytest.raises(ConfigError, match="no such file"):
        parse_class_names(str(tmp_path / "missing.txt"))
    with pytest.raises(ConfigError, match="two or more"):
        parse_class_names("a,,b")


def test_startup_line_never_shows_a_private_class_name():
    from kerascnn.distribute import StrategyInfo
    from kerascnn.engines.policy import describe_strategy

    class _DefaultDistributionStrategy:
        pass

    class MirroredStrategy:
        pass

    assert describe_strategy(StrategyInfo(_DefaultDistributionStrategy(), "default", 1, ["/device:CPU:0"])) == \
        "strategy default, 1 replica(s) on /device:CPU:0"
    assert describe_strategy(StrategyInfo(MirroredStrategy(), "mirrored", 2, ["/cpu:0", "/cpu:1"])) == \
        "strategy mirrored (MirroredStrategy), 2 replica(s) on /cpu:0, /cpu:1"


def _engine(model_fn, num_classes=3):
    import keras

    from kerascnn.distribute import choose
    from kerascnn.engines.tensorflow import TensorFlowEngine

    engine = TensorFlowEngine(choose("default"), num_classes)
    engine.build(model_fn, lambda: keras.optimizers.Adam(1e-2))
    return engine


def _tiny(width):
    import keras

    def build():
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(width),
                                 keras.layers.Dense(3, activation="softmax")])
    return build


def test_tensorflow_engine_learns_and_its_state_round_trips_exactly(tmp_path):
    from kerascnn.engines.base import StepData
    from kerascnn.training import checkpoint

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 96)
    x = (np.eye(3)[y].repeat(6, axis=1)[:, :16] + 0.05 * rng.standard_normal((96, 16))).astype(np.float32)
    x = x.reshape(96, 4, 4, 1)
    engine = _engine(_tiny(8))
    engine.set_train_data(StepData(x, y, 32, seed=1, first_epoch=0, epochs=20))
    first = engine.train_steps(3)
    assert first[2] == 96                                          # 3 steps x 32 examples counted
    for _ in range(19):
        last = engine.train_steps(3)
    assert last[1] / last[2] > first[1] / first[2] and last[1] / last[2] >= 0.9
    ev = engine.evaluate(x, y, 32)
    assert ev[2] == 96 and ev[1] / 96 >= 0.9
    checkpoint.save_state(tmp_path / "state.npz", engine.get_state(), {"epoch": 19, "best": 1.0, "history": [],
                                                                       "optimizer": "adam"})
    other = _engine(_tiny(8))
    meta = checkpoint.load_state(tmp_path / "state.npz", other, "adam")
    assert meta["epoch"] == 19
    for a, b in zip(engine.model.get_weights(), other.model.get_weights()):
        assert np.array_equal(a, b)
    assert int(other.optimizer.iterations.numpy()) == 60
    assert np.array_equal(other.evaluate(x, y, 32), ev)


def test_a_state_from_another_model_or_missing_a_key_is_one_line_naming_the_file(tmp_path):
    from kerascnn.errors import TrainingError
    from kerascnn.training import checkpoint

    engine = _engine(_tiny(8))
    state = engine.get_state()
    meta = {"epoch": 0, "best": 0.5, "history": [], "optimizer": "adam"}
    checkpoint.save_state(tmp_path / "wide.npz", _engine(_tiny(5)).get_state(), meta)
    with pytest.raises(TrainingError) as e:
        checkpoint.load_state(tmp_path / "wide.npz", engine, "adam")
    msg = str(e.value)
    assert "wide.npz" in msg and "has shape (16, 5) in the training state and (16, 8) in this model" in msg
    assert "\n" not in msg
    no_var = {k: v for k, v in state.items() if k != "o:iteration"}
    checkpoint.save_state(tmp_path / "nokey.npz", no_var, meta)
    with pytest.raises(TrainingError, match=r"nokey.npz: no saved value for optimizer variable iteration"):
        checkpoint.load_state(tmp_path / "nokey.npz", engine, "adam")
    fewer = {k: v for k, v in state.items() if k != "w3"}
    checkpoint.save_state(tmp_path / "fewer.npz", fewer, meta)
    with pytest.raises(TrainingError, match=r"fewer.npz: the training state holds 3 weight arrays and this model has 4"):
        checkpoint.load_state(tmp_path / "fewer.npz", engine, "adam")


def test_class_names_are_recorded_in_the_run(tmp_path, invoke):
    r = invoke("train", "convnet", "--epochs", "1", "--class-names", "a,b,c", "--run-dir", tmp_path / "x")
    assert r.exit_code == 2 and "--class-names gives 3 names but digits has 10 classes" in r.output
    assert not (tmp_path / "x").exists()


def test_the_loop_needs_only_the_engine_contract(tmp_path):
    """An engine that implements only engines.base.Engine (no strategy info of its own), here
    around the TensorFlow engine: the loop trains, writes the run directory and reports the engine."""
    from kerascnn import training
    from kerascnn.distribute import choose
    from kerascnn.engines.base import Engine
    from kerascnn.engines.tensorflow import TensorFlowEngine
    from kerascnn.training.merge import resolve_config
    from kerascnn.training.record import RunRecord

    class ContractOnly(Engine):
        name = kind = "contract"

        def __init__(self, inner):
            self._inner = inner
            self.replicas, self.devices = inner.replicas, ["dev0"]

        model = property(lambda self: self._inner.model)

        def precision(self, requested, report):
            return requested or "float32"

        def build(self, build_model, build_optimizer):
            self._inner.build(build_model, build_optimizer)

        def set_train_data(self, data):
            self._inner.set_train_data(data)

        def train_steps(self, n, totals=None):
            return self._inner.train_steps(n, totals)

        def release_data(self):
            self._inner.release_data()

        def evaluate(self, x, y, batch):
            return self._inner.evaluate(x, y, batch)

        def learning_rate(self):
            return self._inner.learning_rate()

        def reseed(self, seed, epoch):
            self._inner.reseed(seed, epoch)

        def sync_to_model(self):
            self._inner.sync_to_model()

        def get_state(self):
            return self._inner.get_state()

        def set_state(self, state):
            self._inner.set_state(state)

    lines = []
    cfg = resolve_config({"model": "convnet", "epochs": 2, "seed": 3, "run_dir": str(tmp_path / "run"),
                          "precision": "float32"})
    out = training.run(cfg, echo=lines.append, verbose=0,
                       make_engine=lambda k: ContractOnly(TensorFlowEngine(choose("default"), k)))
    assert any("engine contract, 1 device(s) on dev0 | precision float32" in l for l in lines), lines
    metrics = out.metrics
    assert metrics["epochs"] == 2 and metrics["final"]["epoch"] == 2 and metrics["final"]["val_accuracy"] > 0.3
    rec = RunRecord.load(tmp_path / "run")
    assert rec.resolved["engine"] == "contract" and rec.config.epochs == 2 and rec.num_classes == 10
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        ".kerascnn.lock", "backup", "best.keras", "config.json", "curves.png", "history.csv", "last.keras",
        "metrics.json", "tb"]


def test_resolve_config_starts_from_the_field_defaults_and_reads_back_a_finetune_config(tmp_path):
    from kerascnn.training.config import TrainConfig
    from kerascnn.training.merge import load_config_file, resolve_config

    cfg = resolve_config({"model": "convnet"})      # no family defaults: exactly the fields' own
    assert cfg == TrainConfig(model="convnet", backend=cfg.backend)
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.seed, cfg.model_options) == (30, 128, 1e-3, 1234, {})
    resnet = resolve_config({"model": "resnet18", "epochs": 2})
    assert (resnet.optimizer, resnet.lr, resnet.weight_decay, resnet.epochs) == ("sgd", 0.05, 5e-4, 2)
    defaults = dict((name, default) for name, default, _ in TrainConfig.fields())
    defaults["model_options"]["x"] = 1                    # a fresh dict each time, never a shared one
    assert dict((n, d) for n, d, _ in TrainConfig.fields())["model_options"] == {} and defaults["model"] is None
    # a fine-tuned run's config.json records "finetune" beside the options: --config reads it back
    rec = dict(TrainConfig(model="convnet", epochs=3, freeze_epochs=1).to_dict(), input_shape=[28, 28, 1],
               num_classes=10, finetune={"frozen_layers": 4}, engine="tensorflow")
    (tmp_path / "config.json").write_text(json.dumps(rec))
    loaded = load_config_file(tmp_path / "config.json")
    assert set(loaded) == set(TrainConfig.names()) - {"run_dir"}             # a reproduced run gets a new directory
    assert loaded["freeze_epochs"] == 1 and loaded["epochs"] == 3 and loaded["backend"] == "tensorflow"


def test_unknown_options_are_answered_with_the_nearest_one(tmp_path, invoke):
    from kerascnn.errors import ConfigError
    from kerascnn.training.merge import resolve_config

    with pytest.raises(ConfigError, match=r"^unknown option 'lerning_rate' \(did you mean 'lr'\?\)$"):
        resolve_config({"model": "convnet", "lerning_rate": 0.1})
    with pytest.raises(ConfigError, match=r"unknown option 'bach_size' \(did you mean 'batch_size'\?\)"):
        resolve_config({"model": "convnet", "bach_size": 8})
    (tmp_path / "c.yaml").write_text("model: convnet\nlearning-rate: 0.1\n")
    r = invoke("train", "--config", tmp_path / "c.yaml")
    assert r.exit_code == 2 and "c.yaml: unknown option 'learning_rate' (did you mean 'lr'?)" in r.output


def test_resume_rules_live_beside_the_run_directory(tmp_path):
    from kerascnn.errors import ConfigError
    from kerascnn.training import resume

    resume.refuse_changes(tmp_path, set(resume.RESUME_CHANGES + resume.RESUME_RUNTIME), ())   # all allowed
    for given, options, flag in (({"seed"}, (), "--seed cannot change"), (set(), ("a=1",), "--option cannot"),
                                 ({"config"}, (), "--config cannot be used"), ({"batch_size", "lr"}, (), "--batch-size")):
        with pytest.raises(ConfigError, match=flag):
            resume.refuse_changes(tmp_path, given, options)
    with pytest.raises(ConfigError, match="not a kerascnn run directory"):
        resume.start(tmp_path, {})
    (tmp_path / "config.json").write_text(json.dumps({"model": "convnet", "epochs": 3, "engine": "jax",
                                                      "run_dir": str(tmp_path), "class_names": ["a", "b"]}))
    recorded = resume.start(tmp_path, {"model": "convnet", "epochs": 5, "lr": None})   # no state yet: epoch 1
    assert recorded["epochs"] == 3 and "run_dir" not in recorded and recorded["backend"] == "jax"
    assert recorded["class_names"] == ["a", "b"]
    with pytest.raises(ConfigError, match="is a convnet run, not lenet5"):
        resume.start(tmp_path, {"model": "lenet5"})
    with pytest.raises(ConfigError, match="trained with the jax engine"):
        resume.check_engine(tmp_path, "tensorflow")
