"""Moved to ``kerascnn.data.stream``; ``from kerascnn import stream`` is that same module (an alias, so
attributes set on one are seen through the other)."""
import sys

from kerascnn.data import stream as _moved

sys.modules[__name__] = _moved
