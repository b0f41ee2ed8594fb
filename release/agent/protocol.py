"""The agent's protocol: constants, the error that carries an exit code, progress, test hooks."""

from __future__ import annotations

import errno
import os
import sys
import time

from . import jsonio

TYPE_CHECKING = False  # typing and the message shapes are for the type checker: not imported on the target
if TYPE_CHECKING:
    from typing import Any


PREFIX = ".release-"
LOCK = PREFIX + "lock"
MARKER = ".release-partial"
DEPLOY_MANIFEST = "DEPLOY-MANIFEST.txt"
ENV_MANIFEST = "ENVIRONMENT-MANIFEST.json"  # written by the deploy that builds a release's environment
# the names at a release's top that the deploy writes itself: no bundle (and so no
# repository) may hold them, or a file of the application would stand in for the tool's own
DEPLOY_WRITES = (DEPLOY_MANIFEST, ENV_MANIFEST)
BUNDLE_MANIFEST = "BUNDLE-MANIFEST.json"
CHUNK = 1 << 20


def _hostname() -> str:
    return os.uname().nodename


class AgentError(Exception):
    """A failure with its exit code; ``kind`` names a failure the controller tells apart
    (``disk-full``), set where it is raised."""

    def __init__(self, code: int, message: str, hint: str = "", kind: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint
        self.kind = kind


def refuse(message: str, hint: str = "") -> AgentError:
    return AgentError(4, message, hint)


def say(msg: str) -> None:
    """Progress on stderr; a controller that went away must not stop the work half-done."""
    try:
        sys.stderr.write(f"[{_hostname()}] {msg}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def checkpoint(name: str) -> None:
    """Test hooks at named points of the ops that change the target.

    ``RELEASE_TEST_KILL_AT=<name>`` kills this agent here (SIGKILL), as a crash would;
    ``RELEASE_TEST_PAUSE_AT=<name>@<file>`` creates <file> here and waits until it is
    removed, so a test can act at exactly this point (no timing races).
    """
    if os.environ.get("RELEASE_TEST_KILL_AT") == name:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
    point, _sep, flag = os.environ.get("RELEASE_TEST_PAUSE_AT", "").partition("@")
    if point == name and flag:
        with open(flag, "w") as f:
            f.write(str(os.getpid()))
        end = time.monotonic() + 300
        while os.path.exists(flag) and time.monotonic() < end:
            time.sleep(0.01)


def _io_error(exc: OSError, where: str) -> AgentError:
    """An OSError from the filesystem as a refusal that names the place and the way out."""
    hints = {
        errno.ENOSPC: "the disk is full: free space on the target and rerun (nothing was left behind)",
        errno.EDQUOT: "the disk quota is exhausted: free space and rerun",
        errno.EROFS: "the target filesystem is read-only: remount it read-write or choose another target.root",
        errno.EACCES: "permission denied: run as a user who may write there, or choose another target.root",
        errno.EPERM: "operation not permitted: check the folder's owner and attributes",
        errno.ELOOP: "a symlink is in the way: this tool never writes through one; inspect it",
        errno.ENOTDIR: "a file is where a folder should be: inspect it",
        errno.EIO: "the disk reported an I/O error: check the device (the kernel log), then rerun",
    }
    code = 3 if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO) else 4
    kind = "disk-full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    return AgentError(code, f"{where}: {exc.strerror or exc}", hints.get(exc.errno or 0, "inspect the target"), kind)


def _answer(doc: dict[str, Any]) -> None:
    try:
        sys.stdout.write(jsonio.dumps(doc) + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):
        pass  # the controller went away: it reconciles the outcome with the target later
