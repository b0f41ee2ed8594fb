"""What killed runs leave (staging, trash, temp files): recognisable as ours, and cleaned."""

from __future__ import annotations

import os
import stat
import time

from . import jsonio
from .fsutil import _write_new, open_dir, remove_tree_at
from .lock import _alive, _read_json
from .protocol import MARKER, PREFIX, refuse, say

TYPE_CHECKING = False  # typing and the message shapes are for the type checker: not imported on the target
if TYPE_CHECKING:
    from typing import Any


def _remove_marked(parent_fd: int, name: str) -> None:
    """Remove our folder ``name``: everything but its marker first, the marker last, then the folder.

    A kill at any point leaves either the marked folder (cleaned by the next run) or
    nothing: never an unmarked copy.
    """
    remove_tree_at(parent_fd, name, last=MARKER)


def leftovers(parent: str) -> list[str]:
    """Names of this tool's transient entries in ``parent`` (staging, trash, lock temp files)."""
    try:
        names = os.listdir(parent)
    except OSError:
        return []
    return sorted(n for n in names if n.startswith((PREFIX + "tmp-", PREFIX + "trash-", PREFIX + "smoke-", PREFIX + "lock-new-", PREFIX + "current-")))


def clean_leftovers(parent: str) -> list[str]:
    """Remove what killed runs of this tool left in ``parent``; only what is provably ours.

    Staging and trash folders are ours when their marker names the id in their name, or
    when they are empty (killed before the marker was written). Lock temp files and
    pointer temp links are ours when the process that wrote them is gone.
    """
    cleaned: list[str] = []
    try:
        parent_fd = open_dir(parent)
    except (FileNotFoundError, NotADirectoryError, OSError):
        return cleaned
    try:
        for name in leftovers(parent):
            try:
                st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
                if name.startswith((PREFIX + "tmp-", PREFIX + "trash-")):
                    if not stat.S_ISDIR(st.st_mode):
                        continue
                    marker = _read_marker(parent_fd, name)
                    if marker is None:
                        try:
                            os.rmdir(name, dir_fd=parent_fd)  # empty: killed before its marker
                        except OSError:
                            continue  # not empty and unmarked: not provably ours, never touched
                    elif _marker_matches(name, marker):
                        say(f"removing leftover of killed run {marker.get('deploy_id')}: {os.path.join(parent, name)}")
                        _remove_marked(parent_fd, name)
                    else:
                        continue
                elif name.startswith(PREFIX + "smoke-"):
                    # a smoke's scratch folder: a smoke takes no lock, so it is removed only
                    # once the agent that made it is gone (a smoke running now keeps its own)
                    smoke_marker = _read_marker(parent_fd, name) if stat.S_ISDIR(st.st_mode) else None
                    if smoke_marker is None or not _marker_matches(name, smoke_marker) or _alive(int(smoke_marker.get("pid", -1) or -1)):
                        continue
                    _remove_marked(parent_fd, name)
                elif name.startswith(PREFIX + "lock-new-"):
                    if not stat.S_ISREG(st.st_mode) or _writer_alive(parent_fd, name):
                        continue
                    os.unlink(name, dir_fd=parent_fd)
                elif name.startswith(PREFIX + "current-"):
                    pid = name.rsplit("-", 1)[-1]
                    if not stat.S_ISLNK(st.st_mode) or (pid.isdigit() and _alive(int(pid))):
                        continue
                    os.unlink(name, dir_fd=parent_fd)
                cleaned.append(os.path.join(parent, name))
            except FileNotFoundError:
                continue
    finally:
        os.close(parent_fd)
    return cleaned


def _read_marker(parent_fd: int, name: str) -> dict[str, Any] | None:
    """The marker of our folder ``name`` (None when it has none)."""
    try:
        fd = open_dir(name, parent_fd)
    except OSError:
        return None
    try:
        return _read_json(fd, MARKER) or None
    finally:
        os.close(fd)


def _marker_matches(name: str, marker: dict[str, Any]) -> bool:
    did = str(marker.get("deploy_id", "\0"))
    return name.startswith((f"{PREFIX}tmp-{did}-", f"{PREFIX}trash-{did}-", f"{PREFIX}smoke-{did}-")) or name in (f"{PREFIX}tmp-{did}", f"{PREFIX}trash-{did}")


def _writer_alive(dir_fd: int, name: str) -> bool:
    data = _read_json(dir_fd, name)
    return _alive(int(data.get("pid", -1) or -1), str(data.get("started", "")))


def make_marked_dir(parent_fd: int, kind: str, deploy_id: str, op: str) -> str:
    """Create ``.release-<kind>-<id>-<random>`` (0700) and write its marker first; return its name.

    The random part makes the name unguessable, so nobody can plant it beforehand; if
    the marker cannot be written (full disk) the empty folder is removed at once.
    """
    for _attempt in range(5):
        name = f"{PREFIX}{kind}-{deploy_id}-{os.urandom(8).hex()}"
        try:
            os.mkdir(name, 0o700, dir_fd=parent_fd)
        except FileExistsError:
            continue
        try:
            fd = open_dir(name, parent_fd)
            try:
                _write_new(fd, MARKER, jsonio.dumps({"deploy_id": deploy_id, "op": op, "pid": os.getpid(), "time": time.time()}).encode())
            finally:
                os.close(fd)
        except BaseException:
            os.rmdir(name, dir_fd=parent_fd)
            raise
        return name
    raise refuse("could not create a private staging folder", "inspect the target root")
