"""The controller's half of release.pipeline.rollback: with O(config), the restart and health
checks of the release configuration ([service], [[health.check]]) go with the request, as
`release rollback` sends them, for the release `current` goes back to; without it the module
runs as it is, from the host's own records."""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible_collections.release.pipeline.plugins.plugin_utils.controller import load


class ActionModule(ActionBase):
    _VALID_ARGS = frozenset(("root", "deploy_id", "lock_wait", "config"))

    def run(self, tmp=None, task_vars=None):  # type: ignore[no-untyped-def]
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        config = args.pop("config", None)
        if config:
            cfg = load(config)
            if cfg.service:
                args["service"] = cfg.service.spec()
        result.update(self._execute_module(module_name="release.pipeline.rollback", module_args=args, task_vars=task_vars))
        return result
