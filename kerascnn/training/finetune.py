"""Fine-tuning from pretrained weights in two phases, as Keras's transfer-learning guide does it.

Phase 1 (``--freeze-epochs N`` epochs): the backbone -- every layer before the head (``kerascnn.pretrained.base.split``:
the last global pooling, else the Flatten), i.e. what a ``_notop`` weight file holds -- is frozen and only the head
trains. Phase 2 (the remaining epochs): ``--unfreeze all`` or the last N weighted backbone
layers (a residual or Inception block counts as one) train too, at ``UNFREEZE_LR_SCALE`` times
the learning rate, with a fresh optimizer whose schedule spans the remaining steps. BatchNorm
layers of the backbone stay in inference mode throughout (``trainable=False``; the guide's
advice: their statistics come with the weights and small batches would spoil them).

The split is a function of the architecture and the epoch only, so a resume in either phase
rebuilds the same trainable set and the same optimizer variables, and the saved state restores
them exactly.
"""
from __future__ import annotations

from kerascnn.errors import ConfigError
from kerascnn.pretrained.base import split

UNFREEZE_LR_SCALE = 0.1   # Keras guide: 1e-5 after 1e-3 for the head would be 0.01; timm's layer decay ~0.1


def parse_unfreeze(value) -> str:
    """``all`` or a positive number of backbone layers, as a string."""
    text = str(value).strip().lower()
    if text == "all":
        return text
    if text.isdigit() and int(text) >= 1:
        return str(int(text))
    raise ConfigError(f"--unfreeze expects all or a number of layers >= 1; received {value!r}")


def _freeze_batchnorm(layer) -> None:
    import keras

    for sub in [layer, *getattr(layer, "inner_layers", [])]:
        if isinstance(sub, keras.layers.BatchNormalization):
            sub.trainable = False


def set_phase(model, phase: int, unfreeze: str = "all") -> dict:
    """Set ``trainable`` for phase 1 (head only) or 2 (head + unfrozen backbone layers); returns
    the names ``{"trainable": [...], "frozen": [...]}`` of the weighted top-level layers."""
    backbone, head = split(model)
    weighted = [layer for layer in backbone if layer.weights]
    if phase == 1:
        thaw = []
    elif unfreeze == "all":
        thaw = weighted
    else:
        thaw = weighted[-int(unfreeze):]
    for layer in backbone:
        layer.trainable = layer in thaw
        _freeze_batchnorm(layer)
    for layer in head:
        layer.trainable = True
    return {"trainable": [layer.name for layer in head + thaw if layer.weights],
            "frozen": [layer.name for layer in weighted if layer not in thaw]}


def record(model, freeze_epochs: int, unfreeze: str, lr: float) -> dict:
    """What the run record says about the phases (names only; no state is changed)."""
    backbone, head = split(model)
    weighted = [layer.name for layer in backbone if layer.weights]
    thawed = weighted if unfreeze == "all" else weighted[-int(unfreeze):]
    return {"phase1_epochs": [1, freeze_epochs], "phase1_trainable": [l.name for l in head if l.weights],
            "phase1_frozen": weighted, "phase2_from_epoch": freeze_epochs + 1, "phase2_unfrozen": thawed,
            "phase2_lr": lr * UNFREEZE_LR_SCALE, "batchnorm": "inference mode (frozen) in the backbone throughout"}
