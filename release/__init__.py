"""release: a side-by-side release pipeline for Python applications."""

__version__ = "0.1.0"
