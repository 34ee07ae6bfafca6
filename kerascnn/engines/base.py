"""The contract between the epoch loop and an engine (pure Python; no TensorFlow, no JAX).

The loop owns the run directory, history, checkpoints and NaN stop; an engine owns "build the
model and optimizer on the devices, run K training steps, evaluate, get/set the state". Every
engine feeds epoch ``e`` in an order that is a stateless shuffle keyed by (seed, epoch) only
(TensorFlow: ``kerascnn.data.epoch_order``; JAX: ``kerascnn.engines.jax.epoch_order``, NumPy),
so resumes are exact on each engine; the orders differ between engines, so a run keeps its engine.

Contract changes (branch ``train``): ``WorkerLost`` added (an engine raises it from
``train_steps``/``evaluate`` when a peer process of a multi-host run is gone; the loop turns it
into a one-line error with the resume hint); ``set_state`` raises ``KeyError`` naming the missing
key, and the loop checks shapes against ``model.weights`` before calling it.

Contract change (branch ``data``, issue 14): ``StepData.x`` and ``evaluate``'s ``x`` may be a
``kerascnn.data.stream.FileImages`` (images on disk, ``len()`` = N) instead of an array when the data
is streamed; an engine that cannot stream raises nothing new: the loop refuses streaming for any
engine whose ``name`` is not "tensorflow" (the TF engine feeds it through ``stream.stream_dataset``,
in the same ``epoch_order`` as ``data.train_dataset``).

Contract change (branch ``jaxstream``, issue 14): an engine other than "tensorflow" streams when
it has ``check_stream()`` (raises ``ConfigError`` in one line where it cannot, e.g. no TensorFlow
for ``tf.data``; called before the run directory is touched). The JAX engine has it and reads the
same ``stream.stream_dataset`` as the TF engine (its order and augmentation, not its own).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np


@dataclass(frozen=True)
class StepData:
    """Prepared training data: float32 NHWC images already scaled (or a ``stream.FileImages``), int labels."""
    x: np.ndarray
    y: np.ndarray
    batch: int          # global batch size (split across replicas)
    seed: int
    first_epoch: int    # 0-based epoch the stream starts at (resume)
    epochs: int         # total epochs; the stream ends after epoch epochs-1
    augment: bool = False

    @property
    def steps_per_epoch(self) -> int:
        return len(self.x) // self.batch


class WorkerLost(Exception):
    """Another worker of a multi-host run stopped answering (the message names the error kind)."""


class Engine(Protocol):
    name: str           # "tensorflow" | "jax"
    replicas: int
    devices: list
    is_chief: bool

    def build(self, build_model: Callable, build_optimizer: Callable) -> None:
        """Create model and optimizer on the engine's devices (``build_model()`` -> keras.Model,
        ``build_optimizer()`` -> built-later keras optimizer). Afterwards ``self.model`` exists."""

    def set_train_data(self, data: StepData) -> None:
        """Hold the training stream: epochs first_epoch..epochs-1, each ``steps_per_epoch`` full batches."""

    def train_steps(self, n: int) -> np.ndarray:
        """Run the next ``n`` steps of the stream; float64 [sum of per-example loss, correct, count]."""

    def evaluate(self, x: np.ndarray, y: np.ndarray, batch: int) -> np.ndarray:
        """Inference-mode sums over (x, y): float64 [sum loss, correct, count]."""

    def reseed(self, seed: int, epoch: int) -> None:
        """Dropout (every SeedGenerator) state := f(seed, epoch), so a resumed epoch draws the same masks."""

    def sync_to_model(self) -> None:
        """Make ``self.model``'s Keras variables hold the current state (for .keras saves and digests)."""

    def get_state(self) -> dict:
        """Weights ``w{i}`` (order of model.get_weights()) and optimizer variables ``o:<path>`` as NumPy."""

    def set_state(self, state: dict) -> None:
        """Inverse of get_state (the learning-rate variable is not restored: it comes from the options)."""

    def learning_rate(self) -> float:
        """The optimizer's current learning rate (after the step just taken)."""


def opt_key(var) -> str:
    """The checkpoint key of an optimizer variable, the same on every engine ('adam/iteration' -> 'o:iteration')."""
    return "o:" + var.path.split("/", 1)[-1]


def assign_state(model, optimizer, state: dict) -> None:
    """Put ``w{i}`` and ``o:<path>`` arrays (``Engine.get_state``'s keys) into the Keras model and
    optimizer variables; the learning rate is left alone (it comes from the current options).
    A missing key raises ``KeyError`` naming it."""
    n = len(model.weights)
    missing = [f"w{i}" for i in range(n) if f"w{i}" not in state]
    if missing:
        raise KeyError(f"no saved value for {missing[0]}")
    model.set_weights([state[f"w{i}"] for i in range(n)])
    for var in optimizer.variables:
        key = opt_key(var)
        if key.endswith("learning_rate"):
            continue
        if key not in state:
            raise KeyError(f"no saved value for optimizer variable {key[2:]}")
        var.assign(state[key])
