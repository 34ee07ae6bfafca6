"""``-o width=``: the reduced-width (or widened) versions of the zoo's models.

Every channel count c of a model (convolution filters, Inception branches, ResNet stages)
becomes ``max(1, int(c * width + 0.5))`` -- round half up, at least one channel. The
torchvision equal-output fixtures (``tests/fixtures/make_torchvision_fixture.py``) shrink
torchvision's own models with the same rule, so ``resnet18 -o width=0.03125`` is their
ResNet-18 with 2, 4, 8, 16 channels.
"""
from kerascnn.errors import ConfigError


def scaled(channels: int, width: float) -> int:
    """``channels`` at ``width`` (1.0: unchanged)."""
    return max(1, int(channels * width + 0.5))


def check_width(width, model: str) -> float:
    width = float(width)
    if not 0 < width <= 16:
        raise ConfigError(f"{model}: width must be > 0 and <= 16 (a channel multiplier); received {width!r}")
    return width


def check_units(units, what: str, model: str) -> int:
    if int(units) < 1:
        raise ConfigError(f"{model}: {what} must be >= 1; received {units!r}")
    return int(units)
