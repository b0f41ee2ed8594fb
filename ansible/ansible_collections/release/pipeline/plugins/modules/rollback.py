#!/usr/bin/python
"""release.pipeline.rollback: remove exactly what a deploy created, by the host's own records."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rollback
short_description: Remove exactly what a deploy created, by the host's own records
description:
  - Removes the release of O(deploy_id) (default, the newest one the host's journal
    recorded) exactly as C(release rollback) does, from the host's own records (its
    DEPLOY-MANIFEST and journal). It is refused when the folder holds anything the deploy did
    not write, when its manifest names another deploy or does not prove the deploy created
    it; C(current) pointed at it goes back to the release it replaced; the parent folder
    is proved back to its state before the deploy.
  - With O(config), the restart and health checks it configures (C([service]),
    C([[health.check]])) run on the release C(current) went back to, before the removed
    release's files go; the task fails when that release is not healthy (the removal
    stands).
  - A deploy made by the C(release) CLI can be rolled back here, and the other way round.
version_added: "0.1.0"
extends_documentation_fragment:
  - release.pipeline.host
  - ansible.builtin.action_common_attributes
author:
  - Release pipeline maintainers (@release-pipeline)
options:
  deploy_id:
    description: The deploy to roll back (default, the newest the host's journal recorded).
    type: str
  lock_wait:
    description: Seconds to wait for a live holder of the root's lock.
    type: float
    default: 0
  config:
    description:
      - The release configuration (C(release.toml)) on the controller, read by the release
        tool itself; its restart and health checks run on the release C(current) goes
        back to.
    type: path
  service:
    description:
      - Internal. The restart and health checks the action plugin of the same name reads from
        O(config) on the controller; it is never set in a task.
    type: dict
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: Undo this host's release of the run
  release.pipeline.rollback:
    root: /srv/app
    deploy_id: "{{ deployed.deploy_id }}"
"""

RETURN = r"""
removed:
  description: The release folder removed.
  returned: changed
  type: str
parent_restored:
  description: The parent folder's listing is back to its state before the deploy.
  returned: changed
  type: bool
pointer:
  description: What happened to C(current).
  returned: changed
  type: str
service:
  description: The restart and health checks of the release C(current) went back to.
  returned: when configured and C(current) went back
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.release.pipeline.plugins.module_utils.agent import journal, rollback_ops
from ansible_collections.release.pipeline.plugins.module_utils.agent.protocol import AgentError


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "root": {"type": "path", "required": True},
            "deploy_id": {"type": "str"},
            "lock_wait": {"type": "float", "default": 0},
            "config": {"type": "path"},
            "service": {"type": "dict"},
        },
        supports_check_mode=True,
    )
    root = module.params["root"]
    try:
        deploy_id = module.params["deploy_id"]
        if not deploy_id:
            order = journal.deploy_order(journal.read(root)[0])
            if not order:
                module.fail_json(msg=f"the journal of {root} records no deploy to roll back", exit_code=3)
            deploy_id = max(order, key=order.get)
        target = rollback_ops.request_from_host(root, deploy_id)["target"]  # what the host's records name
        diff = {"before": {"path": target, "state": "present"}, "after": {"path": target, "state": "absent"}}
        if module.check_mode:
            module.exit_json(changed=True, would_remove=target, deploy_id=deploy_id, diff=diff)
        req = {
            "root": root,
            "deploy_id": deploy_id,
            "from_host": True,
            "lock_wait": module.params["lock_wait"],
            "journal": {"operator": "ansible", "controller": "release.pipeline"},
        }
        if module.params["service"]:
            req["service"] = module.params["service"]
        result = rollback_ops.op_rollback(req)
    except AgentError as exc:
        module.fail_json(msg=exc.message, exit_code=exc.code, hint=exc.hint)
    if not result.get("parent_restored") or not result.get("pointer_restored", True):
        module.fail_json(msg=f"rollback of {deploy_id}: the parent folder or `current` is not back as it was", deploy_id=deploy_id, **result)
    if result.get("service") and not result["service"]["ok"]:
        module.fail_json(msg=f"rollback of {deploy_id}: the release current went back to is not healthy", changed=True, deploy_id=deploy_id, **result)
    module.exit_json(changed=not result.get("already_removed"), deploy_id=deploy_id, diff=diff, **result)


if __name__ == "__main__":
    main()
