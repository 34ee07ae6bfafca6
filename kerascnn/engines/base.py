"""The contract between the epoch loop and an engine (pure Python; no TensorFlow, no JAX).

The loop owns the run directory, history, checkpoints and the NaN stop; an engine owns
everything that depends on who runs the steps. The loop never asks which engine it has: what
differs between engines is a method or an attribute of this contract.

Describing itself (the start-up line and the run record):
  ``name``, ``kind`` (the strategy: default/onedevice/mirrored/multiworker, or the engine's
  name), ``replicas``, ``devices``, ``is_chief`` (only the chief writes the run directory),
  ``task`` (names a non-chief worker's temporary directory), ``jit`` (XLA on), ``describe()``,
  ``readers()`` (how many workers or processes read the data, and what they are called),
  ``lockstep`` (every worker must run the same number of steps per call: no adaptive calls).
Deciding before the model exists:
  ``precision(requested, report)`` the Keras dtype policy; ``check(config)`` refuses in one line
  what the engine cannot do (e.g. the JAX engine and ``--freeze-epochs``); ``check_source(source)``
  refuses a data source it cannot read (e.g. streaming without TensorFlow's ``tf.data``), before
  the run directory is touched.
Training:
  ``build(build_model, build_optimizer)`` (again with a new optimizer when fine-tuning unfreezes),
  ``set_train_data(StepData)`` (the stream may start inside an epoch: ``first_step``),
  ``train_steps(n, totals)`` -> float32 [sum loss, correct, count]: ``totals`` (the epoch's sums
  so far; zeros when None) plus each of the next n steps' sums, added one step at a time in
  float32, so an epoch's sums do not depend on how its steps were split into calls (nor on a
  resume between them); a call may cross an epoch. ``evaluate(x, y, batch)`` (``x`` an array
  or a ``kerascnn.data.source.DataSource``), ``learning_rate()``.
State (exact resume):
  ``reseed(seed, epoch)`` (every Dropout SeedGenerator := f(seed, epoch)), ``sync_to_model()``,
  ``get_state()`` / ``set_state(state)`` (weights ``w{i}``, optimizer variables ``o:<path>``, the
  Dropout seed states ``g{i}`` as they are after the last step -- a state saved inside an epoch
  continues with them; one without them, from an older kerascnn, is restored without;
  ``set_state`` raises ``KeyError`` naming a missing key; the loop checks shapes against
  ``model.weights`` first).
Faults:
  ``train_steps``/``evaluate`` raise ``WorkerLost`` when a peer process of a multi-host run is
  gone (the loop turns it into one line with the resume hint).

Every engine feeds epoch ``e`` in an order that is a function of (seed, epoch) only (the
TensorFlow engine and every streamed source: ``kerascnn.data.epoch_order``; the JAX engine's
resident arrays: ``kerascnn.engines.jax.epoch_order``, NumPy), so resumes are exact on each
engine; the orders differ between engines, so a run keeps its engine.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class StepData:
    """Training data: float32 NHWC images already scaled (an array) or any ``DataSource``, int labels."""
    x: object
    y: np.ndarray
    batch: int          # global batch size (split across replicas)
    seed: int
    first_epoch: int    # 0-based epoch the stream starts at (resume)
    epochs: int         # total epochs; the stream ends after epoch epochs-1
    augment: bool = False
    first_step: int = 0  # the stream starts at this step of first_epoch (a resume saved inside an epoch)

    def __post_init__(self):
        if not 0 <= self.first_step < max(1, self.steps_per_epoch):
            raise ValueError(f"first_step {self.first_step} is not a step of an epoch of {self.steps_per_epoch}")

    @property
    def steps_per_epoch(self) -> int:
        return len(self.x) // self.batch

    @property
    def source(self):
        """The images as a ``kerascnn.data.source.DataSource``."""
        from kerascnn.data.source import as_source

        return as_source(self.x, self.y)


class WorkerLost(Exception):
    """Another worker of a multi-host run stopped answering (the message names the error kind)."""


class Engine(abc.ABC):
    name: str = "engine"
    kind: str = "engine"
    replicas: int = 1
    devices: list = []
    is_chief: bool = True
    task: str = "worker"
    jit: bool = True
    lockstep: bool = False
    model = None
    optimizer = None

    # ------------------------------------------------------------------ describing itself
    def describe(self) -> str:
        """The start-up line's part about devices: ``engine NAME, N device(s) on ...``."""
        return f"engine {self.name}, {self.replicas} device(s) on {', '.join(map(str, self.devices))}"

    def readers(self) -> tuple:
        """(how many processes read the data, what they are called)."""
        return 1, "workers"

    def record(self, precision: str) -> dict:
        """What the run record says about the engine, in config.json's order."""
        return {"engine": self.name, "strategy_resolved": self.kind, "replicas": self.replicas,
                "devices": [str(v) for v in self.devices], "precision_resolved": precision, "jit_resolved": self.jit}

    # ------------------------------------------------------------------ deciding before the model
    @abc.abstractmethod
    def precision(self, requested, report) -> str:
        """The Keras dtype policy for this run (``requested``, else the engine's default for the model)."""

    def check(self, config) -> None:
        """Refuse (ConfigError, one line) options this engine cannot run."""

    def check_source(self, source) -> None:
        """Refuse (ConfigError, one line) a data source this engine cannot read."""

    # ------------------------------------------------------------------ training
    @abc.abstractmethod
    def build(self, build_model: Callable, build_optimizer: Callable) -> None:
        """Create model and optimizer on the engine's devices (``build_model()`` -> keras.Model,
        ``build_optimizer()`` -> built-later keras optimizer). Afterwards ``self.model`` exists."""

    @abc.abstractmethod
    def set_train_data(self, data: StepData) -> None:
        """Hold the training stream: epochs first_epoch..epochs-1, each ``steps_per_epoch`` full batches."""

    @abc.abstractmethod
    def release_data(self) -> None:
        """Let go of the training stream (its iterator and the reader threads behind it) at the end
        of a run. The engine's compiled steps close over the engine, so without this the stream
        lives on in that reference cycle until Python's cycle collector runs, at some later moment
        of an in-process caller (``kerascnn.train()`` twice in a notebook), where tf.data's
        iterator teardown was seen to block the caller for up to two minutes."""

    @abc.abstractmethod
    def train_steps(self, n: int, totals=None) -> np.ndarray:
        """Run the next ``n`` steps of the stream; float32 ``totals`` (zeros when None) plus each
        step's [sum of per-example loss, correct, count], added in step order in float32."""

    @abc.abstractmethod
    def evaluate(self, x, y, batch: int) -> np.ndarray:
        """Inference-mode sums over (x, y): float64 [sum loss, correct, count]."""

    @abc.abstractmethod
    def learning_rate(self) -> float:
        """The optimizer's current learning rate (after the step just taken)."""

    # ------------------------------------------------------------------ state
    @abc.abstractmethod
    def reseed(self, seed: int, epoch: int) -> None:
        """Dropout (every SeedGenerator) state := f(seed, epoch), so a resumed epoch draws the same masks."""

    @abc.abstractmethod
    def sync_to_model(self) -> None:
        """Make ``self.model``'s Keras variables hold the current state (for .keras saves and digests)."""

    @abc.abstractmethod
    def get_state(self) -> dict:
        """Weights ``w{i}`` (order of model.get_weights()) and optimizer variables ``o:<path>`` as NumPy."""

    @abc.abstractmethod
    def set_state(self, state: dict) -> None:
        """Inverse of get_state (the learning-rate variable is not restored: it comes from the options)."""


def seed_value(seed: int, epoch: int) -> list:
    """The SeedGenerator state every engine gives Dropout in epoch ``epoch``."""
    return [seed * 1000 + epoch, 0]


def opt_key(var) -> str:
    """The checkpoint key of an optimizer variable, the same on every engine ('adam/iteration' -> 'o:iteration')."""
    return "o:" + var.path.split("/", 1)[-1]


def is_seed_state(var) -> bool:
    return "seed_generator_state" in var.path


def seed_states(model) -> list:
    """The model's Dropout (SeedGenerator) state variables, in a fixed order (keys ``g{i}``)."""
    return [v for v in model.non_trainable_variables if is_seed_state(v)]


def start_totals(totals) -> np.ndarray:
    """An epoch's running float32 sums [loss, correct, count]: ``totals``, or zeros."""
    return np.zeros(3, np.float32) if totals is None else np.asarray(totals, np.float32).reshape(3)


def assign_state(model, optimizer, state: dict) -> None:
    """Put ``w{i}`` and ``o:<path>`` arrays (``Engine.get_state``'s keys) into the Keras model and
    optimizer variables; the learning rate is left alone (it comes from the current options).
    A missing key raises ``KeyError`` naming it."""
    n = len(model.weights)
    missing = [f"w{i}" for i in range(n) if f"w{i}" not in state]
    if missing:
        raise KeyError(f"no saved value for {missing[0]}")
    model.set_weights([state[f"w{i}"] for i in range(n)])
    seeds = seed_states(model)
    if any(f"g{i}" in state for i in range(len(seeds))):   # absent from an older kerascnn's epoch-end state
        for i, var in enumerate(seeds):
            if f"g{i}" not in state:
                raise KeyError(f"no saved value for g{i} ({var.path})")
            var.assign(state[f"g{i}"])
    for var in optimizer.variables:
        key = opt_key(var)
        if key.endswith("learning_rate"):
            continue
        if key not in state:
            raise KeyError(f"no saved value for optimizer variable {key[2:]}")
        var.assign(state[key])
