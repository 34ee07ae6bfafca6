"""--save-every (kerascnn/training/savepoints.py): the option's validation, the step and time
triggers (the clock injected, nothing sleeps), multi-worker's rule, and the stop line that says
where a resume continues. Pure Python: no TensorFlow is loaded here."""
import pytest

from kerascnn.errors import ConfigError
from kerascnn.training import savepoints
from kerascnn.training.config import TrainConfig
from kerascnn.training.loop import stopped_line
from kerascnn.training.savepoints import SaveEvery, SaveTrigger, parse


@pytest.mark.parametrize("given,stored", [(500, "500"), ("500", "500"), (" 10M ", "10m"), ("90s", "90s"),
                                          ("1.5h", "1.5h"), ("0.5m", "0.5m"), ("Epoch", "epoch"), ("1", "1")])
def test_save_every_is_stored_one_way(given, stored):
    assert TrainConfig(model="convnet", save_every=given).save_every == stored
    assert TrainConfig(model="convnet").save_every is None           # the default: 10 minutes (below)


@pytest.mark.parametrize("given,needle", [
    ("0", "a number of steps must be in 1..1,000,000,000; received 0"),
    (10 ** 10, "a number of steps must be in 1..1,000,000,000"),
    ("0.5s", "a time must be between 1s and 7 days (168h); received 0.5s"),
    ("200h", "a time must be between 1s and 7 days"),
    ("-3", "save_every must be a number of steps (e.g. 500), a time (90s, 10m, 1.5h) or epoch; received '-3'"),
    ("10 minutes", "received '10 minutes'"), ("1e3", "received '1e3'"), ("", "received ''"), (True, "received True"),
    (2.5, "received 2.5"), ("10d", "received '10d'"), ("m", "received 'm'"),
])
def test_bad_save_every_is_refused_in_one_line(given, needle):
    with pytest.raises(ConfigError) as e:
        TrainConfig(model="convnet", save_every=given)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_bad_save_every_on_the_command_line_is_one_error_line_before_tensorflow(invoke, tmp_path):
    r = invoke("train", "convnet", "--save-every", "5 min", "--run-dir", tmp_path / "run")
    assert r.exit_code == 2 and "Error: save_every must be a number of steps" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "run").exists()


def test_what_save_every_means_and_the_multi_worker_rule():
    assert parse(None) == SaveEvery(seconds=600.0) and parse("10m").words() == "every 10m"
    assert parse("500") == SaveEvery(steps=500) and parse("500").words() == "every 500 steps"
    assert parse("1.5h") == SaveEvery(seconds=5400.0) and parse("90s").words() == "every 90s"
    assert parse("epoch") == SaveEvery() and parse("epoch").words() == "at epoch ends"
    # several workers must save at the same step: steps work, a time is refused, the default is epoch ends
    assert parse("500", workers=2) == SaveEvery(steps=500) and parse(None, workers=2) == SaveEvery()
    with pytest.raises(ConfigError, match=r"--save-every 10m: 2 workers must save at the same step and their "
                                          r"clocks differ; give a number of steps \(e.g. --save-every 500\) or epoch"):
        parse("10m", workers=2)


def test_a_step_trigger_saves_at_multiples_of_the_run_step_and_caps_calls_to_reach_them():
    t = SaveTrigger(parse("7"), clock=lambda: 0.0)
    steps_per_epoch, due, step = 10, [], 0
    while step < 3 * steps_per_epoch:           # the loop: calls of at most 4 steps, capped at save points
        n = min(4, t.limit(step))
        step += n
        if step % steps_per_epoch and t.due(step):
            due.append(step)
            t.saved()
    assert due == [7, 14, 21, 28]              # every 7th step of the run, across epoch boundaries
    assert t.limit(14) == 7 and t.limit(15) == 6 and t.limit(20) == 1


def test_a_time_trigger_saves_once_that_long_passed_since_the_last_save():
    now = [100.0]
    t = SaveTrigger(parse("10m"), clock=lambda: now[0])
    assert t.limit(3) is None and not t.due(3)
    now[0] += 599.9
    assert not t.due(50)
    now[0] += 0.1
    assert t.due(51)                           # 600 s after the start
    t.saved()                                  # the save (or an epoch end's) restarts the clock
    assert not t.due(52)
    now[0] += 600
    assert t.due(53)
    epoch_only = SaveTrigger(parse("epoch"), clock=lambda: now[0])
    now[0] += 1e6
    assert not epoch_only.due(7) and epoch_only.limit(7) is None


def test_the_stop_line_says_what_is_saved_and_where_a_resume_continues():
    line = stopped_line("by SIGTERM", (3, 200), (3, 230), 10, 400, "runs/a")
    assert line == ("stopped by SIGTERM in epoch 4 of 10 (at step 230 of 400); epochs 1-3 and steps 1-200 of 400 "
                    "of epoch 4 are saved; continue with: kerascnn train --resume runs/a (from epoch 4, step 201)")
    assert stopped_line("by Ctrl-C", (0, 5), (0, 6), 3, 80, "r").startswith(
        "stopped by Ctrl-C in epoch 1 of 3 (at step 6 of 80); steps 1-5 of 80 of epoch 1 are saved;")
    assert stopped_line("by Ctrl-C", (2, 0), (2, 7), 3, 80, "r") == (
        "stopped by Ctrl-C after epoch 2 of 3; epochs 1-2 are saved; continue with: kerascnn train --resume r "
        "(from epoch 3)")
    assert "no epoch was completed" in stopped_line("by Ctrl-C", (0, 0), (0, 3), 3, 80, "r")


def test_savepoints_and_the_config_need_no_tensorflow():
    import subprocess
    import sys

    code = ("import sys; from kerascnn.training import savepoints, loop, config; "
            "savepoints.parse(config.TrainConfig(model='convnet', save_every='5m').save_every); "
            "print(any(m.split('.')[0] in ('tensorflow', 'keras', 'jax') for m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr[-1500:]
    assert savepoints.DEFAULT == "10m"
