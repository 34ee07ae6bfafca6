"""The package version, in a leaf module: what the run record and ``--version`` report, importable
by any layer without importing the package's public API (``kerascnn/__init__``)."""
__version__ = "0.1.0"
