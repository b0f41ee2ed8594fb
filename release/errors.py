"""One error hierarchy, mapped to the exit codes of the public contract.

    ReleaseError                 exit 1  a stage or check ran and failed
    ├── ConfigError              exit 2  bad usage or bad config (names the key and the fix)
    ├── BlockedError             exit 3  a prerequisite is missing; nothing was changed
    └── RefusedError             exit 4  refused for safety; nothing was changed
        └── LockHeldError        exit 4  another deploy/rollback holds the target lock
    └── OutcomeUnknownError      exit 1  the answer was lost: reconciled with the target later

Every message is passed through :func:`release.redact.redact` before it is stored, so
no exception text can carry a password or a DSN with a password.
"""

from __future__ import annotations

import errno

from .redact import redact


class ReleaseError(Exception):
    """A stage or a check ran and failed (exit 1)."""

    exit_code = 1

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


class BlockedError(ReleaseError):
    """A prerequisite is missing; nothing was changed (exit 3)."""

    exit_code = 3


class RefusedError(ReleaseError):
    """Refused for safety; nothing was changed (exit 4)."""

    exit_code = 4


class LockHeldError(RefusedError):
    """The target root is locked by another deploy or rollback (exit 4)."""


class OutcomeUnknownError(ReleaseError):
    """The target may or may not have done it: the answer was lost (exit 1).

    Never read as "failed": the next deploy or rollback reconciles it with the target.
    """


EXIT_CODES = {1: ReleaseError, 2: ConfigError, 3: BlockedError, 4: RefusedError}


def from_exit_code(code: int, message: str, *, hint: str = "", detail: str = "") -> ReleaseError:
    """Rebuild an error reported by the target-side agent (which speaks exit codes)."""
    cls = EXIT_CODES.get(code, ReleaseError)
    return cls(message, hint=hint, detail=detail)


# a disk that cannot take what this machine writes (bundle, state, reports): blocked, not a crash
_DISK_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "the disk quota is exhausted", errno.EROFS: "the filesystem is read-only"}


def disk_error(exc: OSError, where: str, *, hint: str) -> BlockedError | None:
    """The exit-3 error for a full, over-quota or read-only disk under ``where`` (a path);
    None for any other OS error, which stays a bug to see."""
    why = _DISK_ERRNOS.get(exc.errno or 0)
    if why is None:
        return None
    return BlockedError(f"{why} writing {exc.filename or where}", hint=hint)
