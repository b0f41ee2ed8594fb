#!/usr/bin/python
"""release.pipeline.status: the releases on a target root, as the host's own records say."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: status
short_description: The releases on a target root, as the host's own records say
description:
  - Lists the releases under O(root) that the release pipeline deployed (each with its
    version, commit, deploy id, its state in the host's journal, whether it is current,
    and who signed it), the C(current) pointer, the previous release as the journal says,
    and what killed runs left behind.
  - Runs the same agent op as C(release status); it changes nothing.
version_added: "0.1.0"
extends_documentation_fragment:
  - release.pipeline.host
  - ansible.builtin.action_common_attributes
author:
  - Release pipeline maintainers (@release-pipeline)
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: What is deployed here
  release.pipeline.status:
    root: /srv/app
  register: releases
"""

RETURN = r"""
releases:
  description: The releases this tool deployed, oldest name first.
  returned: always
  type: list
  elements: dict
current:
  description: What C(current) points at, in words.
  returned: always
  type: str
previous:
  description: The release that was current before, as the host's journal says.
  returned: always
  type: str
leftovers:
  description: What killed runs left behind (cleaned by the next change).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.release.pipeline.plugins.module_utils.agent import status_ops
from ansible_collections.release.pipeline.plugins.module_utils.agent.protocol import AgentError


def main() -> None:
    module = AnsibleModule(argument_spec={"root": {"type": "path", "required": True}}, supports_check_mode=True)
    try:
        result = status_ops.op_status({"root": module.params["root"]})
    except AgentError as exc:
        module.fail_json(msg=exc.message, exit_code=exc.code, hint=exc.hint)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
