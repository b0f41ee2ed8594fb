"""Documentation shared by the modules whose action plugin reads the release configuration."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  config:
    description: The release configuration (C(release.toml)) on the controller, read by the release tool itself.
    type: path
    required: true
attributes:
  action:
    support: full
"""
