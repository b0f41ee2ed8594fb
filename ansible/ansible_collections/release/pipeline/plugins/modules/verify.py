#!/usr/bin/python
"""release.pipeline.verify: re-hash a deployed release against its manifest; drift fails."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: verify
short_description: Re-hash a deployed release against its manifest, drift is a failure
description:
  - Re-hashes the release of O(deploy_id) against its BUNDLE-MANIFEST and the tree digest
    its DEPLOY-MANIFEST recorded, as C(release verify) does. Every added, removed or
    changed file is listed, and any of them fails the task.
version_added: "0.1.0"
extends_documentation_fragment:
  - release.pipeline.host
  - ansible.builtin.action_common_attributes
author:
  - Release pipeline maintainers (@release-pipeline)
options:
  deploy_id:
    description: The deploy whose release is verified.
    type: str
    required: true
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: Nothing changed in the release since it was deployed
  release.pipeline.verify:
    root: /srv/app
    deploy_id: "{{ deployed.deploy_id }}"
"""

RETURN = r"""
added:
  description: Files in the release its manifest does not list.
  returned: always
  type: list
  elements: str
changed_files:
  description: Files whose content is not the manifest's.
  returned: always
  type: list
  elements: str
removed:
  description: Files the manifest lists that are gone.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.release.pipeline.plugins.module_utils.agent import status_ops
from ansible_collections.release.pipeline.plugins.module_utils.agent.protocol import AgentError


def main() -> None:
    module = AnsibleModule(argument_spec={"root": {"type": "path", "required": True}, "deploy_id": {"type": "str", "required": True}}, supports_check_mode=True)
    try:
        target, manifest = status_ops.release_of(module.params["root"], module.params["deploy_id"])
        result = status_ops.op_verify({"target": target, "tree_sha256": manifest.get("tree_sha256"), "manifest_sha256": ""})
    except AgentError as exc:
        module.fail_json(msg=exc.message, exit_code=exc.code, hint=exc.hint)
    # Ansible's own `changed` is whether the task changed anything: the changed files are `changed_files`
    facts = {k: v for k, v in result.items() if k != "changed"}
    facts["changed_files"] = result["changed"]
    if not result["clean"]:
        module.fail_json(msg=f"drift in {target}: {len(result['added'])} added, {len(result['changed'])} changed, {len(result['removed'])} removed", **facts)
    module.exit_json(changed=False, **facts)


if __name__ == "__main__":
    main()
