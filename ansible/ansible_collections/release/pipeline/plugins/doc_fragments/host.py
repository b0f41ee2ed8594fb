"""Documentation shared by the modules that act on a target root by its own records."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  root:
    description: The target root (the parent folder of the releases).
    type: path
    required: true
"""
