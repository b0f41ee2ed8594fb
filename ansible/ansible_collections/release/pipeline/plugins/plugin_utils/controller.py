"""What the collection's action plugins share on the controller: the release tool's own
configuration and request builders (the same code `release` runs)."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleActionFail


def load(path: Any) -> Any:
    """The release configuration at ``path``, read by the tool itself."""
    if not path:
        raise AnsibleActionFail("config is required: the release.toml on the controller")
    try:
        from release import config
        from release.errors import ReleaseError
    except ImportError as exc:
        raise AnsibleActionFail(f"the release tool is not installed on the controller: {exc}") from None
    try:
        return config.load(str(path))
    except ReleaseError as exc:
        raise AnsibleActionFail(f"{exc.message} ({exc.hint})" if exc.hint else exc.message) from None


JOURNAL = {"operator": "ansible", "controller": "release.pipeline"}
