"""Learning-rate schedules (per optimizer step), built on ``keras.optimizers.schedules``.

* ``constant``: the base rate, after an optional linear warm-up;
* ``cosine``: linear warm-up, then cosine decay to 0 (Keras's ``CosineDecay``);
* ``onecycle``: Smith & Topin's one-cycle policy: warm-up from lr/25 to lr over the warm-up
  (30% of training when none is given), then cosine annealing down to lr/10^4.
"""
from __future__ import annotations

import math

import keras


@keras.saving.register_keras_serializable(package="kerascnn")
class WarmupConstant(keras.optimizers.schedules.LearningRateSchedule):
    def __init__(self, lr, warmup_steps=0):
        self.lr, self.warmup_steps = float(lr), int(warmup_steps)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        if self.warmup_steps <= 0:
            return keras.ops.convert_to_tensor(self.lr, "float32")
        return self.lr * keras.ops.minimum(1.0, (step + 1.0) / self.warmup_steps)

    def get_config(self):
        return {"lr": self.lr, "warmup_steps": self.warmup_steps}


@keras.saving.register_keras_serializable(package="kerascnn")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    def __init__(self, lr, total_steps, warmup_steps=0, div_factor=25.0, final_div_factor=1e4):
        self.lr, self.total_steps = float(lr), max(1, int(total_steps))
        self.warmup_steps = int(warmup_steps) or max(1, int(0.3 * self.total_steps))
        self.div_factor, self.final_div_factor = float(div_factor), float(final_div_factor)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        start, low = self.lr / self.div_factor, self.lr / self.final_div_factor
        up = start + (self.lr - start) * keras.ops.minimum(1.0, step / self.warmup_steps)
        frac = keras.ops.clip((step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps), 0.0, 1.0)
        down = low + 0.5 * (self.lr - low) * (1.0 + keras.ops.cos(math.pi * frac))
        return keras.ops.where(step < self.warmup_steps, up, down)

    def get_config(self):
        return {"lr": self.lr, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "div_factor": self.div_factor, "final_div_factor": self.final_div_factor}


def make_schedule(name: str, lr: float, total_steps: int, warmup_steps: int = 0):
    if name == "constant":
        return WarmupConstant(lr, warmup_steps) if warmup_steps else lr
    if name == "cosine":
        warmup_steps = min(warmup_steps, total_steps - 1) if total_steps > 1 else 0
        if warmup_steps:
            return keras.optimizers.schedules.CosineDecay(lr / 100.0, max(1, total_steps - warmup_steps),
                                                          warmup_target=lr, warmup_steps=warmup_steps)
        return keras.optimizers.schedules.CosineDecay(lr, max(1, total_steps))
    if name == "onecycle":
        return OneCycle(lr, total_steps, warmup_steps)
    raise ValueError(name)


def make_optimizer(name: str, schedule, weight_decay: float = 0.0, momentum: float = 0.9):
    wd = weight_decay or None
    if name == "sgd":
        return keras.optimizers.SGD(schedule, momentum=momentum, nesterov=True, weight_decay=wd)
    if name == "adam":
        return keras.optimizers.Adam(schedule, weight_decay=wd)
    if name == "adamw":
        return keras.optimizers.AdamW(schedule, weight_decay=weight_decay or 0.004)
    raise ValueError(name)
