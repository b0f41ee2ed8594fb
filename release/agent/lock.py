"""The target root's lock."""

from __future__ import annotations

import os
import time

from . import jsonio
from .fsutil import _write_new, open_dir
from .protocol import LOCK, PREFIX, AgentError, _hostname, refuse, say

TYPE_CHECKING = False  # typing and the message shapes are for the type checker: not imported on the target
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any


def read_lock(root: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(root, LOCK), "rb") as f:
            raw = f.read(1 << 16)
    except FileNotFoundError:
        return None
    except OSError:
        raw = b""
    try:
        data = jsonio.loads(raw)
        if isinstance(data, dict):
            return data
    except ValueError:
        pass
    return {"host": "?", "pid": -1, "time": 0, "deploy_id": "?", "unreadable": True}


def _start_time(pid: int) -> str:
    """The kernel's start time of ``pid`` (to tell a reused pid from the lock's holder), or ''."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _alive(pid: int, started: str = "") -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped) is dead too
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            return False
        return not started or fields[19] == started
    except (OSError, IndexError):
        return True


def _link_new(dir_fd: int, name: str, data: bytes) -> bool:
    """Create ``name`` holding ``data``, atomically and complete: written to a private new file,
    then hard-linked to ``name`` (fails if it exists). False if ``name`` exists."""
    tmp = f"{PREFIX}lock-new-{os.urandom(8).hex()}"
    _write_new(dir_fd, tmp, data)
    try:
        os.link(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp, dir_fd=dir_fd)


def _read_json(dir_fd: int, name: str) -> dict[str, Any]:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return {}
    try:
        data = jsonio.loads(os.read(fd, 1 << 16) or b"{}")
        return data if isinstance(data, dict) else {}
    except ValueError:
        return {}
    finally:
        os.close(fd)


def lock_wait(req: Mapping[str, object]) -> float:
    """A request's ``lock_wait`` (``--lock-wait``): seconds to wait for a live holder, 0 = none."""
    value = req.get("lock_wait")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 86400 else 0.0


class Lock:
    """The root's lock: ``.release-lock``, complete before it is visible, never outliving its op.

    Taking it: the JSON is written to a private new file, which is then hard-linked to
    the lock name (atomic, fails if the lock exists), so a full disk never leaves an
    empty lock. Breaking a stale one (``--break-lock``) happens under a second lock, so
    two breakers cannot both win.
    """

    def __init__(self, root: str, deploy_id: str, op: str, break_lock: bool, wait: float = 0.0) -> None:
        self.path = os.path.join(root, LOCK)
        self.root = root
        self.wait = max(0.0, float(wait))  # --lock-wait: seconds to wait for a holder to finish
        pid = os.getpid()
        self.info = {"host": _hostname(), "pid": pid, "started": _start_time(pid), "time": time.time(), "deploy_id": deploy_id, "op": op}
        self.break_lock = break_lock
        self.held = False

    def _describe(self, holder: dict[str, Any]) -> str:
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(holder.get("time", 0) or 0)))
        return f"{holder.get('op', '?')} {holder.get('deploy_id', '?')} by pid {holder.get('pid')} on {holder.get('host')} since {since}"

    def _try(self, root_fd: int) -> bool:
        return _link_new(root_fd, LOCK, jsonio.dumps(self.info).encode())

    def __enter__(self) -> Lock:
        root_fd = open_dir(self.root)
        deadline = time.monotonic() + self.wait
        tries = 0
        told = False
        try:
            while True:
                tries += 1
                if self._try(root_fd):
                    self.held = True
                    return self
                holder = read_lock(self.root)
                if holder is None:
                    if tries < 3 or time.monotonic() < deadline:
                        continue  # released meanwhile: try again
                    break
                desc = self._describe(holder)
                same_host = holder.get("host") == _hostname()
                try:
                    pid = int(holder.get("pid", -1))
                except (TypeError, ValueError):
                    pid = -1
                dead = bool(holder.get("unreadable")) or (same_host and not _alive(pid, str(holder.get("started", ""))))
                if not dead and time.monotonic() < deadline:  # --lock-wait: a holder that may finish is waited for
                    if not told:
                        say(f"waiting up to {self.wait:g} s for the lock at {self.path} ({desc})")
                        told = True
                    time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
                    continue
                if same_host and not dead:
                    raise AgentError(
                        4,
                        f"target root is locked: {self.path} held by {desc}",
                        "wait for it to finish, or rerun with --lock-wait SECONDS; a lock of a live process is never broken",
                    )
                if not self.break_lock:
                    if dead:
                        raise refuse(f"stale lock at {self.path}: {desc} (that process is gone)", "rerun with --break-lock to break it")
                    raise refuse(
                        f"target root is locked: {self.path} held by {desc}; it was taken on another host, so whether it is alive cannot be checked from here",
                        "if you are sure that run is gone, rerun with --break-lock",
                    )
                self._break(root_fd, holder, desc)
                if tries >= 3 and time.monotonic() >= deadline:
                    break
            raise refuse(f"could not take the lock at {self.path}", "rerun")
        finally:
            os.close(root_fd)

    def _break(self, root_fd: int, judged: dict[str, Any], desc: str) -> None:
        """Remove the stale lock ``judged`` if it is still the lock, under the breaker's lock
        (itself taken like the lock; one left by a breaker that died is removed first)."""
        breaker = PREFIX + "lock-breaking"
        data = jsonio.dumps(self.info).encode()
        if not _link_new(root_fd, breaker, data):
            other = _read_json(root_fd, breaker)
            if other.get("host") == _hostname() and not _alive(int(other.get("pid", -1) or -1), str(other.get("started", ""))):
                try:
                    os.unlink(breaker, dir_fd=root_fd)  # its breaker died: no run is breaking the lock
                except FileNotFoundError:
                    pass
            if not _link_new(root_fd, breaker, data):
                raise AgentError(4, f"another run is breaking the lock at {self.path}", "rerun in a moment")
        try:
            if read_lock(self.root) == judged:
                say(f"breaking stale lock: {desc}")
                try:
                    os.unlink(LOCK, dir_fd=root_fd)
                except FileNotFoundError:
                    pass
        finally:
            os.unlink(breaker, dir_fd=root_fd)

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        """Drop the lock now (once; leaving the ``with`` block then does nothing)."""
        if self.held:
            self.held = False
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
