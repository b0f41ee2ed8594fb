#!/usr/bin/python
"""release.pipeline.smoke: the G5 smoke checks of a release, on the host, as `release smoke` runs them."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: smoke
short_description: Run a release's smoke checks on the host (G5), in its own environment
description:
  - Runs the smoke checks of the release configuration O(config) (compileall, imports,
    attribute asserts, the app's pytest suite, commands) against the release of
    O(deploy_id) on the host, bounded, in a private scratch folder, with a clean
    environment, and proves afterwards that the release's tree is unchanged.
  - The verdict goes into the host's journal; C(release.pipeline.promote) promotes by it.
  - The read-only database check (G6) is not run here. It runs once, on the controller.
version_added: "0.1.0"
extends_documentation_fragment:
  - release.pipeline.controller
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
author:
  - Release pipeline maintainers (@release-pipeline)
options:
  deploy_id:
    description: The deploy whose release is checked.
    type: str
    required: true
attributes:
  check_mode:
    support: none
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Smoke the release on each host
  release.pipeline.smoke:
    config: release.toml
    deploy_id: "{{ deployed.deploy_id }}"
"""

RETURN = r"""
results:
  description: Each check with its status, duration and detail.
  returned: always
  type: list
  elements: dict
verify:
  description: The tree-unchanged proof after the checks.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.release.pipeline.plugins.module_utils.adapter import require_request
from ansible_collections.release.pipeline.plugins.module_utils.agent import smoke_ops, status_ops
from ansible_collections.release.pipeline.plugins.module_utils.agent.protocol import AgentError


def main() -> None:
    module = AnsibleModule(
        argument_spec={"config": {"type": "path", "required": True}, "deploy_id": {"type": "str", "required": True}, "request": {"type": "dict"}}
    )
    require_request(module)
    req = dict(module.params["request"])
    try:
        target, manifest = status_ops.release_of(req["root"], req["deploy_id"])
        req.update(target=target, tree_sha256=manifest.get("tree_sha256"), manifest_sha256="")
        answer = smoke_ops.op_smoke(req)
    except AgentError as exc:
        module.fail_json(msg=exc.message, exit_code=exc.code, hint=exc.hint)
    failed = [r["name"] for r in answer["results"] if r["status"] != "passed"]
    if not answer["verify"]["clean"]:
        failed.append("tree-unchanged")
    if failed:
        module.fail_json(msg="smoke failed: " + ", ".join(failed), exit_code=1, **answer)
    module.exit_json(changed=False, **answer)


if __name__ == "__main__":
    main()
