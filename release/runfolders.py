"""What a run leaves in shared places while it works, named after it, so that a later run
can remove what a killed run left: private temporary folders (an export of the source)
and partial files. Only what is still as the tool made it is removed: a plain folder of
mode 0700 or a plain file, of this user, whose run (this machine, that process) is gone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

OWNER = ".owner"  # in each private folder: "<host>-<pid>" (``tag``) of the run that made it


def tag() -> str:
    """This run, as names and markers carry it: ``<host>-<pid>``."""
    return f"{socket.gethostname()}-{os.getpid()}"


def gone(run: str) -> bool:
    """Whether the run ``<host>-<pid>`` was on this machine and has ended (a live process, one
    of another user, another machine's or a malformed tag: False)."""
    host, _, pid = run.rpartition("-")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _ours(path: Path, kind: int, mode: int | None = None) -> bool:
    try:
        st = path.lstat()
    except OSError:
        return False
    return stat.S_IFMT(st.st_mode) == kind and st.st_uid == os.getuid() and (mode is None or stat.S_IMODE(st.st_mode) == mode)


def clear_killed_files(folder: Path, pattern: str, separator: str) -> None:
    """Remove files in ``folder`` matching ``pattern`` whose name ends in
    ``<separator><host>-<pid>`` of a run that is gone."""
    for path in folder.glob(pattern):
        if separator in path.name and gone(path.name.rsplit(separator, 1)[1]) and _ours(path, stat.S_IFREG):
            path.unlink(missing_ok=True)


def make(prefix: str) -> Path:
    """A new private folder (mode 0700) in TMPDIR, marked with this run; the folders of this
    prefix that killed runs left go first."""
    base = Path(tempfile.gettempdir())
    for folder in base.glob(prefix + "*"):
        if not (_ours(folder, stat.S_IFDIR, 0o700) and _ours(folder / OWNER, stat.S_IFREG)):
            continue
        try:
            run = (folder / OWNER).read_text().strip()
        except (OSError, ValueError):
            continue
        if gone(run):
            shutil.rmtree(folder, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    (folder / OWNER).write_text(tag() + "\n")
    return folder


@contextlib.contextmanager
def private(prefix: str) -> Iterator[Path]:
    """``make(prefix)``, removed when the block ends."""
    folder = make(prefix)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
