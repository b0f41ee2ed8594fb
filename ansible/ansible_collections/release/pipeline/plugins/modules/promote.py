#!/usr/bin/python
"""release.pipeline.promote: switch `current` by evidence, restart, health-check, revert on failure."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: promote
short_description: Point current at a release, restart it, health-check it, go back on failure
description:
  - Switches the host's C(current) pointer to the release of O(deploy_id) atomically, as
    C(release promote) does. It refuses a release whose last smoke on this host did not
    pass, unless O(force) (journalled).
  - Then runs the configured restart and health checks (C([service]),
    C([[health.check]]) in O(config)) on the host. When either fails, C(current) goes back
    to the release it replaced, which is restarted and health-checked again, and the task
    fails naming what failed.
version_added: "0.1.0"
extends_documentation_fragment:
  - release.pipeline.controller
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
author:
  - Release pipeline maintainers (@release-pipeline)
options:
  deploy_id:
    description: The deploy whose release becomes current.
    type: str
    required: true
  force:
    description: Promote although the release's last smoke on this host did not pass (journalled).
    type: bool
    default: false
attributes:
  check_mode:
    support: none
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Promote the release, with its restart and health checks
  release.pipeline.promote:
    config: release.toml
    deploy_id: "{{ deployed.deploy_id }}"
"""

RETURN = r"""
current:
  description: The release C(current) points at now, relative to the root.
  returned: always
  type: str
previous:
  description: What it pointed at before.
  returned: always
  type: str
service:
  description: The restart and the health checks of the new release.
  returned: when configured
  type: dict
reverted:
  description: The new release was not healthy, and C(current) went back.
  returned: when it went back
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.release.pipeline.plugins.module_utils.adapter import require_request
from ansible_collections.release.pipeline.plugins.module_utils.agent import pointer_ops, status_ops
from ansible_collections.release.pipeline.plugins.module_utils.agent.protocol import AgentError

SPEC = {
    "config": {"type": "path", "required": True},
    "deploy_id": {"type": "str", "required": True},
    "force": {"type": "bool", "default": False},
    "request": {"type": "dict"},
}


def main() -> None:
    module = AnsibleModule(argument_spec=SPEC)
    require_request(module)
    req = dict(module.params["request"])
    try:
        req["target"] = status_ops.release_of(req["root"], req["deploy_id"])[0]
        req.setdefault("break_lock", False)
        result = pointer_ops.op_promote(req)
    except AgentError as exc:
        module.fail_json(msg=exc.message, exit_code=exc.code, hint=exc.hint)
    if result.get("reverted"):
        module.fail_json(msg=f"the new release was not healthy: current went back to {result.get('current') or 'none'}", exit_code=1, changed=True, **result)
    module.exit_json(changed=not result.get("unchanged"), **result)


if __name__ == "__main__":
    main()
