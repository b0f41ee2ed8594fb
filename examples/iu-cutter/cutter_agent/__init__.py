"""cutter_agent: cut documents into information units (IUs)."""

from .cutter import IU, cut, normalise

__version__ = "0.6.0"
__all__ = ["IU", "cut", "normalise", "__version__"]
