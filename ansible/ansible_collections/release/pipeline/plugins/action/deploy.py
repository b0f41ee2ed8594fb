"""The controller's half of release.pipeline.deploy: the request is built by the release
tool's own code (the same plan, checks and request as `release deploy`), the bundle goes
over Ansible's connection, the module runs the agent's deploy op on the host."""

from __future__ import annotations

import os

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    TRANSFERS_FILES = True
    _VALID_ARGS = frozenset(("config", "bundle", "lock_wait"))

    def run(self, tmp=None, task_vars=None):  # type: ignore[no-untyped-def]
        result = super().run(tmp, task_vars)
        args = self._task.args
        if not args.get("config"):
            raise AnsibleActionFail("release.pipeline.deploy needs config: the release.toml on the controller")
        try:
            from release import config as release_config
            from release import deploy as release_deploy
            from release.errors import ReleaseError
        except ImportError as exc:
            raise AnsibleActionFail(f"the release tool is not installed on the controller: {exc}") from None
        try:
            cfg = release_config.load(str(args["config"]))
            plan, chosen = release_deploy.prepare(cfg, args.get("bundle"))
            release_deploy.check_before(cfg, plan, chosen, no_plan=True)  # the controller's own signature and attestation checks
            req = dict(release_deploy.agent_request(cfg, plan, sums=chosen.sums))
        except ReleaseError as exc:
            result.update(failed=True, msg=exc.message, exit_code=exc.exit_code, hint=exc.hint)
            return result
        req["lock_wait"] = float(args.get("lock_wait") or 0)
        req["journal"] = {"operator": "ansible", "controller": "release.pipeline"}
        remote_tmp = self._make_tmp_path()
        try:
            remote_bundle = self._connection._shell.join_path(remote_tmp, os.path.basename(plan.bundle))
            if not self._task.check_mode:
                self._transfer_file(plan.bundle, remote_bundle)
                self._fixup_perms2((remote_tmp, remote_bundle))
            req["bundle_path"] = remote_bundle
            result.update(self._execute_module(module_name="release.pipeline.deploy", module_args={**self._task.args, "request": req}, task_vars=task_vars))
        finally:
            self._remove_tmp_path(remote_tmp)
        return result
