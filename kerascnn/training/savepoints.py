"""When the training state is saved within an epoch (``--save-every``; pure Python).

After every epoch the whole training state is saved (``checkpoint``); ``--save-every`` adds
saves inside an epoch, at the end of an engine call (the loop shortens calls so that a step
count is hit exactly):

* ``N`` (e.g. ``500``): whenever the run's step count (epoch x steps per epoch + step) is a
  multiple of N, as Keras's ``BackupAndRestore(save_freq=N)``;
* a time (``90s``, ``10m``, ``1.5h``): once that long has passed since the last save;
* ``epoch``: only at epoch ends.

The default (``None``) is every 10 minutes: a run stopped deep into a long epoch loses at most
10 minutes, and a short run (the digits quick start: about a second an epoch) never saves
within an epoch. Several workers (``TF_CONFIG``, ``jax.distributed``) must save at the same
step, and their clocks differ: there a step count works (every worker saves at that step, the
chief writes), a time is refused in one line, and the default saves only at epoch ends.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Callable, Optional

from kerascnn.errors import ConfigError

DEFAULT = "10m"
UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
MAX_STEPS = 10 ** 9
MIN_SECONDS = 1.0
_TIME = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)\s*([smh])$")


@dataclass(frozen=True)
class SaveEvery:
    """A parsed ``--save-every``: ``steps`` or ``seconds`` (neither: only at epoch ends)."""
    steps: Optional[int] = None
    seconds: Optional[float] = None

    def words(self) -> str:
        if self.steps:
            return f"every {self.steps:,} steps"
        if self.seconds:
            return f"every {_duration(self.seconds)}"
        return "at epoch ends"


def _duration(seconds: float) -> str:
    for unit, size in (("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _bad(value) -> ConfigError:
    from kerascnn.training.config import short

    return ConfigError(f"save_every must be a number of steps (e.g. 500), a time (90s, 10m, 1.5h) or epoch; "
                       f"received {short(value)}")


def normalise(value) -> str:
    """``--save-every``'s value checked and written one way: ``"500"``, ``"10m"``, ``"epoch"``."""
    if isinstance(value, bool):
        raise _bad(value)
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        raise _bad(value)
    text = value.strip().lower()
    if text == "epoch":
        return text
    if text.isdigit():
        steps = int(text)
        if not 1 <= steps <= MAX_STEPS:
            raise ConfigError(f"save_every: a number of steps must be in 1..{MAX_STEPS:,}; received {steps}")
        return str(steps)
    m = _TIME.match(text)
    if not m:
        raise _bad(value)
    seconds = float(m.group(1)) * UNITS[m.group(2)]
    if not MIN_SECONDS <= seconds <= 7 * 86400:
        raise ConfigError(f"save_every: a time must be between 1s and 7 days (168h); received {value.strip()}")
    return f"{float(m.group(1)):g}{m.group(2)}"


def parse(value: Optional[str], workers: int = 1) -> SaveEvery:
    """The ``SaveEvery`` of a (normalised) ``--save-every`` for a run read by ``workers``
    processes; a time under several workers is refused in one line (see the module docstring)."""
    if value is None:
        return SaveEvery() if workers > 1 else parse(DEFAULT)
    text = normalise(value)
    if text == "epoch":
        return SaveEvery()
    if text.isdigit():
        return SaveEvery(steps=int(text))
    if workers > 1:
        raise ConfigError(f"--save-every {text}: {workers} workers must save at the same step and their clocks "
                          f"differ; give a number of steps (e.g. --save-every 500) or epoch")
    return SaveEvery(seconds=float(text[:-1]) * UNITS[text[-1]])


class SaveTrigger:
    """Decides, after each engine call, whether the state is saved within the epoch.

    ``clock`` (``time.monotonic``) is injected by tests. ``limit(step)`` caps the next call so a
    step-count save point is reached exactly; ``due(step)`` is asked only inside an epoch;
    ``saved()`` restarts the clock (after every save, epoch ends included)."""

    def __init__(self, every: SaveEvery, clock: Callable[[], float] = time.monotonic):
        self.every, self.clock = every, clock
        self.last = clock()

    def limit(self, step: int) -> Optional[int]:
        """Steps from the run's step ``step`` to the next step-count save point (None: no cap)."""
        n = self.every.steps
        return n - step % n if n else None

    def due(self, step: int) -> bool:
        """True when the state should be saved now, after the run's step ``step``."""
        if self.every.steps:
            return step % self.every.steps == 0
        if self.every.seconds:
            return self.clock() - self.last >= self.every.seconds
        return False

    def saved(self) -> None:
        self.last = self.clock()
