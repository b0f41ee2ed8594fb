"""release.pipeline.dbcheck: the read-only database check (G6), once, here on the controller,
by the same code as `release smoke` (nothing runs on the host)."""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible_collections.release.pipeline.plugins.plugin_utils.controller import load


class ActionModule(ActionBase):
    _VALID_ARGS = frozenset(("config",))

    def run(self, tmp=None, task_vars=None):  # type: ignore[no-untyped-def]
        result = super().run(tmp, task_vars)
        cfg = load(self._task.args.get("config"))
        from release import smoke
        from release.errors import ReleaseError

        try:
            checks = smoke.database(cfg)
        except ReleaseError as exc:
            result.update(failed=True, msg=exc.message, exit_code=exc.exit_code, hint=exc.hint)
            return result
        if not checks:
            result.update(failed=True, msg="the release configuration has no read-only database check ([[smoke.check]] kind = db-readonly)")
            return result
        bad = [c["name"] for c in checks if c["status"] != "passed"]
        result.update(changed=False, checks=checks)
        if bad:
            result.update(failed=True, msg="database check failed: " + ", ".join(bad))
        return result
