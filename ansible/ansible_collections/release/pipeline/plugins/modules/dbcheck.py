#!/usr/bin/python
"""release.pipeline.dbcheck: documentation of the action plugin (it runs on the controller only)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dbcheck
short_description: The provably read-only database check (G6), once, on the controller
description:
  - Runs every C(db-readonly) smoke check of the release configuration, on the controller,
    by the same code as C(release smoke). Each query is parsed and judged before it runs
    (one plain SELECT, no forbidden or volatile function), the role must not be able to
    write, and the transaction is read-only with no transaction id and no tuples changed.
  - The DSN comes from the environment variable the check names, never from the play.
  - Run it once for the fleet (C(run_once), C(delegate_to) localhost). Nothing runs on the hosts.
version_added: "0.1.0"
author:
  - Release pipeline maintainers (@release-pipeline)
extends_documentation_fragment:
  - release.pipeline.controller
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: The database, read-only, once
  release.pipeline.dbcheck:
    config: release.toml
  run_once: true
  delegate_to: localhost
"""

RETURN = r"""
checks:
  description: Each database check with its status and detail (statements, counts, role, grant matrix digest).
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(argument_spec={"config": {"type": "path", "required": True}, "request": {"type": "dict"}}, supports_check_mode=True)
    module.fail_json(msg="release.pipeline.dbcheck runs on the controller, in its action plugin")


if __name__ == "__main__":
    main()
