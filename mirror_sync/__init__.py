"""mirror_sync: mirror a PyPI-compatible simple index into a directory any static server can serve."""

__version__ = "0.1.0"
