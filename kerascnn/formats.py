"""Moved to ``kerascnn.data.formats``; ``from kerascnn import formats`` is that same module (an alias, so
attributes set on one are seen through the other)."""
import sys

from kerascnn.data import formats as _moved

sys.modules[__name__] = _moved
