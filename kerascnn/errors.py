"""Domain errors. Pure Python; the CLI maps them to click exceptions exactly once.

* ``ConfigError`` and subclasses: the user asked for something impossible (exit 2).
* Every other ``KerasCNNError``: a runtime problem such as bad data (exit 1).
Messages are one line and say what was expected and what was received.
"""
from __future__ import annotations


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


class Stopped(KeyboardInterrupt):
    """The process was asked to stop (SIGTERM); raised by the CLI's signal handler. A subclass of
    KeyboardInterrupt, so the same path as Ctrl-C runs (no ``except Exception`` swallows it;
    ``finally`` blocks and partial-file cleanup run) and the CLI prints one line.
    ``signal_name`` is e.g. "SIGTERM"; a command may catch it to add how to resume."""

    def __init__(self, signal_name: str = "SIGTERM"):
        super().__init__(f"stopped ({signal_name})")
        self.signal_name = signal_name


def short(value, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: messages never format unbounded input."""
    if isinstance(value, (list, tuple, dict)) and len(value) > 20:
        return f"<{type(value).__name__} of {len(value):,} items>"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10 ** 30:
        return f"<an integer of about {len(str(abs(value))) if abs(value) < 10 ** 4000 else 'more than 4,000'} digits>"
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def first_line(exc, limit: int | None = None, default: str | None = None, tf: bool = True) -> str:
    """The first non-blank line of an exception's text (ANSI colour codes removed, stripped),
    cut to ``limit`` characters; ``default`` (the exception's class name unless given) when the
    text is blank. A TensorFlow graph-execution error gives its cause instead (``tf_cause``)
    of its first line, which only names TensorFlow's internal nodes (``tf=False``: the line). The one helper every
    one-line message about a caught exception uses. Pure text."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), None)
    if line is None:
        line = exc.__class__.__name__ if default is None else default
    elif tf and tf_graph_error(line):
        line = tf_cause(text)
    return line if limit is None else line[:limit]


def tf_graph_error(line: str) -> bool:
    """Whether ``line`` (an error's first line) is TensorFlow's graph-execution header."""
    return line.startswith("Graph execution error") or "{{function_node " in line


def tf_cause(exc) -> str:
    """The cause in a TensorFlow error's text, one line, without TensorFlow's internal names:
    ``{{function_node __wrapped__IteratorGetNext_output_types_1_device_/job:localhost/...}} Error in
    user-defined function passed to MapDataset:1 transformation with iterator: Iterator::Root::
    ParallelMapV2: jpeg::Uncompress failed. Invalid JPEG data or crop window. [[{{node DecodeJpeg}}]]
    [Op:IteratorGetNext] name:`` -> ``jpeg::Uncompress failed. Invalid JPEG data or crop window.``
    (so that a message cut to 80 characters still says what went wrong). Pure text: no TensorFlow."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(getattr(exc, "message", None) or exc))
    text = re.sub(r"\{\{function_node [^}]*\}\}", " ", text)
    lines = []
    for ln in text.splitlines():
        ln = re.sub(r"\s*\[\[.*?\]\]", "", ln)                      # [[{{node DecodeJpeg}}]]
        ln = re.sub(r"\s*\[Op:[^\]]*\](\s*name:.*)?$", "", ln).strip()   # [Op:IteratorGetNext] name:
        if ln and not ln.startswith(("Graph execution error", "Detected at node", "<stack", "File ")):
            lines.append(ln)
    cause = lines[-1] if lines else exc.__class__.__name__
    return re.sub(r"^.*Iterator::\S+: ", "", re.sub(r"^Error in user-defined function passed to .*? transformation "
                                                    r"with iterator: ", "", cause)).strip() or exc.__class__.__name__
