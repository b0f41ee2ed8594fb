#!/usr/bin/python
"""release.pipeline.deploy: unpack a bundle side by side, checked, with its DEPLOY-MANIFEST."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: deploy
short_description: Unpack a release bundle side by side, checked, never over anything
description:
  - Runs the release pipeline's deploy op on the host, exactly as C(release deploy) does.
    The bundle's checksum comes first (and, with C(target.trust), the host's own signers),
    every member scanned against the bundle's manifest, a private staging folder, the
    DEPLOY-MANIFEST, one rename into place. Nothing that exists is overwritten.
  - The action plugin of the same name builds the request on the controller with the
    tool's own code from O(config) and transfers the bundle over Ansible's connection.
  - Idempotent the Ansible way. The same bundle already deployed at that path is C(ok),
    unchanged; anything else at that path fails, naming it.
version_added: "0.1.0"
extends_documentation_fragment:
  - release.pipeline.controller
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
author:
  - Release pipeline maintainers (@release-pipeline)
options:
  bundle:
    description: The bundle on the controller (default, the newest of the recorded head).
    type: path
  lock_wait:
    description: Seconds to wait for a live holder of the root's lock.
    type: float
    default: 0
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
"""

EXAMPLES = r"""
- name: Deploy the release
  release.pipeline.deploy:
    config: release.toml
  register: deployed
"""

RETURN = r"""
deploy_id:
  description: The deploy's id, the key of every later step.
  returned: always
  type: str
target:
  description: The release folder on the host.
  returned: always
  type: str
manifest_sha256:
  description: The sha256 of the DEPLOY-MANIFEST written.
  returned: changed
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.release.pipeline.plugins.module_utils.adapter import require_request
from ansible_collections.release.pipeline.plugins.module_utils.agent import deploy_ops
from ansible_collections.release.pipeline.plugins.module_utils.agent.protocol import AgentError
from ansible_collections.release.pipeline.plugins.module_utils.agent.release_tree import read_deploy_manifest

SPEC = {
    "config": {"type": "path", "required": True},
    "bundle": {"type": "path"},
    "lock_wait": {"type": "float", "default": 0},
    "request": {"type": "dict"},
}


def main() -> None:
    module = AnsibleModule(
        argument_spec=SPEC,
        supports_check_mode=True,
    )
    require_request(module)
    req = module.params["request"]
    root = req["root"]
    target = os.path.join(root, req["parent"], req["dir"]) if req.get("parent") else os.path.join(root, req["dir"])
    diff = {"before": {"path": target, "state": "absent"}, "after": {"path": target, "state": "present", "bundle": req["bundle"]}}
    if os.path.lexists(target):
        try:
            there = read_deploy_manifest(target)
        except (OSError, AgentError):
            there = {}
        if there.get("bundle_sha256") == req["bundle_sha256"]:
            module.exit_json(changed=False, deploy_id=there.get("deploy_id", ""), target=target, msg="this bundle is deployed there already")
        module.fail_json(msg=f"target already exists: {target} (not this bundle's release): nothing was changed", exit_code=4, target=target)
    if module.check_mode:
        module.exit_json(changed=True, deploy_id=req["deploy_id"], target=target, diff=diff, msg=f"would create {target}")
    try:
        result = deploy_ops.op_deploy(req)
    except AgentError as exc:
        module.fail_json(msg=exc.message, exit_code=exc.code, hint=exc.hint, target=target)
    module.exit_json(changed=True, deploy_id=req["deploy_id"], diff=diff, **result)


if __name__ == "__main__":
    main()
