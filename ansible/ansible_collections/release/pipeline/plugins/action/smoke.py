"""The controller's half of release.pipeline.smoke: the checks come from the release
configuration, as `release smoke` sends them; the module runs them on the host."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.release.pipeline.plugins.plugin_utils.controller import JOURNAL, load


class ActionModule(ActionBase):
    _VALID_ARGS = frozenset(("config", "deploy_id"))

    def run(self, tmp=None, task_vars=None):  # type: ignore[no-untyped-def]
        result = super().run(tmp, task_vars)
        cfg = load(self._task.args.get("config"))
        if not self._task.args.get("deploy_id"):
            raise AnsibleActionFail("deploy_id is required: the deploy to smoke (register the deploy task)")
        from release import smoke

        checks = [c for c in cfg.checks if c.kind != "db-readonly"]  # the database check runs once, on the controller
        if not checks:
            raise AnsibleActionFail("the release configuration has no smoke checks to run on the host ([[smoke.check]])")
        req = dict(smoke.request(cfg, {"root": cfg.root, "target": ""}, checks))
        req.update(deploy_id=self._task.args["deploy_id"], journal=JOURNAL, total_timeout=float(sum(c.timeout for c in checks) + 5))
        result.update(self._execute_module(module_name="release.pipeline.smoke", module_args={**self._task.args, "request": req}, task_vars=task_vars))
        return result
