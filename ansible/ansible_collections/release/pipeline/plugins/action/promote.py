"""The controller's half of release.pipeline.promote: the restart and health checks come
from the release configuration ([service], [[health.check]]), as `release promote` sends them."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.release.pipeline.plugins.plugin_utils.controller import JOURNAL, load


class ActionModule(ActionBase):
    _VALID_ARGS = frozenset(("config", "deploy_id", "force"))

    def run(self, tmp=None, task_vars=None):  # type: ignore[no-untyped-def]
        result = super().run(tmp, task_vars)
        cfg = load(self._task.args.get("config"))
        if not self._task.args.get("deploy_id"):
            raise AnsibleActionFail("deploy_id is required: the deploy to promote (register the deploy task)")
        if cfg.strategy != "timestamped":
            raise AnsibleActionFail('promote switches `current` of the timestamped strategy: set target.strategy = "timestamped"')
        req = {"root": cfg.root, "deploy_id": self._task.args["deploy_id"], "force": bool(self._task.args.get("force")), "journal": JOURNAL}
        if cfg.service:
            req["service"] = cfg.service.spec()
        result.update(self._execute_module(module_name="release.pipeline.promote", module_args={**self._task.args, "request": req}, task_vars=task_vars))
        return result
