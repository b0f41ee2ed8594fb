"""Documentation shared by the modules whose action plugin reads the release configuration."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  config:
    description: The release configuration (C(release.toml)) on the controller, read by the release tool itself.
    type: path
    required: true
  request:
    description:
      - Internal. The request the action plugin of the same name builds on the controller
        with the release tool; it is never set in a task.
    type: dict
attributes:
  platform:
    platforms: posix
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
"""
