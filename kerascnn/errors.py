"""Domain errors. Pure Python; the CLI maps them to click exceptions exactly once.

* ``ConfigError`` and subclasses: the user asked for something impossible (exit 2).
* Every other ``KerasCNNError``: a runtime problem such as bad data (exit 1).
Messages are one line and say what was expected and what was received.
"""


class KerasCNNError(Exception):
    """Base class of every error kerascnn reports to the user."""


class ConfigError(KerasCNNError):
    """Bad arguments: unknown model, impossible option value (usage error)."""


class SpecError(ConfigError):
    """A layer spec that cannot be read: reported as one ``Error:`` line (exit 2), no usage header."""


class ModelNotFound(ConfigError):
    """A model name that is not in the registry."""


class GeometryError(ConfigError):
    """A layer stack whose spatial size collapses to zero or below (or, in strict mode, doesn't fit)."""


class MemoryGuardError(ConfigError):
    """A model/input combination whose estimated memory does not fit."""


class DataError(KerasCNNError):
    """Data that cannot be used: wrong arrays, bad labels, corrupt images."""


class TrainingError(KerasCNNError):
    """Training could not go on (for example the loss became NaN)."""


class ExportError(KerasCNNError):
    """An export that could not be written or did not verify."""


class WriteError(KerasCNNError):
    """A file or directory could not be written (disk full, file too large); the previous one is kept."""
