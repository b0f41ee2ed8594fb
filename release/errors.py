"""One error hierarchy, mapped to the exit codes of the public contract.

    ReleaseError                 exit 1  a stage or check ran and failed
    ├── ConfigError              exit 2  bad usage or bad config (names the key and the fix)
    ├── BlockedError             exit 3  a prerequisite is missing; nothing was changed
    │   ├── DiskFullError        exit 3  no space (or quota) left where it writes
    │   └── AbsentError          exit 3  what an op acts on is not there at all
    ├── RefusedError             exit 4  refused for safety; nothing was changed
    │   ├── LockHeldError        exit 4  another deploy/rollback holds the target lock
    │   └── InUseError           exit 4  prune: the release became current or previous meanwhile
    ├── UnreachableError         exit 1  the host was never reached: nothing was started there
    ├── UnhealthyError           exit 1  the promoted release did not come up healthy: the host went back
    └── OutcomeUnknownError      exit 1  the answer was lost: reconciled with the target later

Each class carries its ``kind`` (a fleet's table shows it per host): a failure is
classified where it is raised, never from the text of its message.

Every message is passed through :func:`release.redact.redact` before it is stored, so
no exception text can carry a password or a DSN with a password.
"""

from __future__ import annotations

import errno

from .redact import redact


class ReleaseError(Exception):
    """A stage or a check ran and failed (exit 1)."""

    exit_code = 1
    kind = "failed"

    def __init__(self, message: str, *, hint: str = "", detail: str = "") -> None:
        self.message = redact(message)
        self.hint = redact(hint)
        self.detail = redact(detail)
        super().__init__(self.message)

    def to_dict(self) -> dict[str, object]:
        return {
            "error": type(self).__name__,
            "exit_code": self.exit_code,
            "message": self.message,
            "hint": self.hint,
            "detail": self.detail,
        }


class ConfigError(ReleaseError):
    """Bad usage or bad configuration (exit 2)."""

    exit_code = 2
    kind = "bad config"


class BlockedError(ReleaseError):
    """A prerequisite is missing; nothing was changed (exit 3)."""

    exit_code = 3
    kind = "blocked"


class DiskFullError(BlockedError):
    """No space (or quota) left where the tool writes, here or on a target (exit 3)."""

    kind = "disk full"


class AbsentError(BlockedError):
    """What an op acts on is not there at all (a rollback whose target root is gone) (exit 3)."""

    kind = "absent"


class RefusedError(ReleaseError):
    """Refused for safety; nothing was changed (exit 4)."""

    exit_code = 4
    kind = "refused"


class LockHeldError(RefusedError):
    """The target root is locked by another deploy or rollback (exit 4)."""


class InUseError(RefusedError):
    """Prune would remove a release that became current or previous since it looked (exit 4):
    nothing was removed; the release stays."""

    kind = "in use"


class OutcomeUnknownError(ReleaseError):
    """The target may or may not have done it: the answer was lost (exit 1).

    Never read as "failed": the next deploy or rollback reconciles it with the target.
    """

    kind = "connection lost"


class UnreachableError(ReleaseError):
    """The host was never reached (ssh could not connect): nothing was started there (exit 1)."""

    kind = "unreachable"


class UnhealthyError(ReleaseError):
    """The promoted release's restart or a health check failed: that host's `current` went
    back to the release it replaced (exit 1)."""

    kind = "unhealthy"


EXIT_CODES = {1: ReleaseError, 2: ConfigError, 3: BlockedError, 4: RefusedError}


KINDS: dict[str, type[ReleaseError]] = {"disk-full": DiskFullError, "absent": AbsentError, "in-use": InUseError}  # the agent's error kinds (AgentError.kind)


def from_exit_code(code: int, message: str, *, hint: str = "", detail: str = "", kind: str = "") -> ReleaseError:
    """Rebuild an error reported by the target-side agent (which speaks exit codes, and names
    a kind where it raised one)."""
    cls = KINDS.get(kind) or EXIT_CODES.get(code, ReleaseError)
    return cls(message, hint=hint, detail=detail)


# a disk that cannot take what this machine writes (bundle, state, reports): blocked, not a crash
_DISK_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "the disk quota is exhausted", errno.EROFS: "the filesystem is read-only"}


def disk_error(exc: OSError, where: str, *, hint: str) -> BlockedError | None:
    """The exit-3 error for a full, over-quota or read-only disk under ``where`` (a path);
    None for any other OS error, which stays a bug to see."""
    why = _DISK_ERRNOS.get(exc.errno or 0)
    if why is None:
        return None
    cls = BlockedError if exc.errno == errno.EROFS else DiskFullError
    return cls(f"{why} writing {exc.filename or where}", hint=hint)
