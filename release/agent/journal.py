"""The journal of a target root: what happened to its releases, on the host itself.

``<root>/.release-journal``: one JSON object per line, appended with one ``write`` on a
descriptor opened ``O_APPEND | O_NOFOLLOW`` and fsync'd before the op answers: deployed,
smoke passed / failed (with the hash of its results), promoted, restart ok / failed, health
passed / failed, reverted, rolled back, pruned;
each with the time, the deploy id, the operator and the controller that asked. It lives
beside the releases, outside every release tree, under the tool's own prefix (no parent
listing counts it). Reading is bounded (the last ``MAX_READ`` bytes, lines of at most
``MAX_LINE``); a torn or corrupt line (a write cut short by a crash, a hand edit) is
skipped and counted, never fatal. A journal that is not a regular file (a link planted in
its place) is refused: nothing is written through it.
"""

from __future__ import annotations

import os
import stat
import time

from . import jsonio
from .protocol import PREFIX, refuse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

JOURNAL = PREFIX + "journal"
MAX_LINE = 64 << 10
MAX_READ = 16 << 20
_FIELDS = ("operator", "controller")


def _who(req: Mapping[str, Any]) -> dict[str, str]:
    asked = req.get("journal")
    out: dict[str, str] = {}
    if isinstance(asked, dict):
        for k in _FIELDS:
            v = asked.get(k)
            if isinstance(v, str):
                out[k] = v[:200]
    return out


def append(root: str, event: str, deploy_id: str, req: Mapping[str, Any], **facts: Any) -> None:
    """Append one event to ``root``'s journal and make it durable."""
    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "event": event, "deploy_id": deploy_id, **_who(req), **facts}
    line = (jsonio.dumps(entry) + "\n").encode()
    if len(line) > MAX_LINE:
        line = (jsonio.dumps({k: entry[k] for k in ("time", "event", "deploy_id")}) + "\n").encode()
    path = os.path.join(root, JOURNAL)
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as exc:
        if os.path.islink(path):
            raise refuse(f"the journal {path} is a link: nothing is written through it", f"move {path} away by hand (it should be a file)") from None
        raise exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise refuse(f"the journal {path} is not a regular file: nothing is written through it", f"move {path} away by hand")
        if st.st_size and os.pread(fd, 1, st.st_size - 1) != b"\n":
            line = b"\n" + line  # a torn last line stays torn alone: this entry starts a line of its own
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read(root: str) -> tuple[list[dict[str, Any]], int]:
    """The journal's entries (of its last ``MAX_READ`` bytes) and how many lines were skipped
    as torn or corrupt."""
    path = os.path.join(root, JOURNAL)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return [], 0
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return [], 0
        start = max(0, st.st_size - MAX_READ)
        os.lseek(fd, start, os.SEEK_SET)
        chunks = []
        left = st.st_size - start
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    lines = data.split(b"\n")
    if start:
        lines = lines[1:]  # the first line of a tail is cut
    entries: list[dict[str, Any]] = []
    skipped = 0
    for raw in lines:
        if not raw.strip():
            continue
        try:
            entry = jsonio.loads_bounded(raw, MAX_LINE) if len(raw) <= MAX_LINE else None
        except ValueError:
            entry = None
        if isinstance(entry, dict) and isinstance(entry.get("event"), str):
            entries.append(entry)
        else:
            skipped += 1
    return entries, skipped


def states(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per deploy id: its last event and the time of it."""
    out: dict[str, dict[str, Any]] = {}
    for e in entries:
        did = e.get("deploy_id")
        if isinstance(did, str):
            out[did] = {"event": e["event"], "time": e.get("time", "")}
    return out


def deploy_order(entries: list[dict[str, Any]]) -> dict[str, int]:
    """Per deploy id, the position of its ``deployed`` entry: the order releases came in,
    as the host saw it (never folder time or name)."""
    out: dict[str, int] = {}
    for i, e in enumerate(entries):
        did = e.get("deploy_id")
        if e["event"] == "deployed" and isinstance(did, str) and did not in out:
            out[did] = i
    return out


def _last_of(entries: list[dict[str, Any]], deploy_id: str, events: tuple[str, ...]) -> str:
    for e in reversed(entries):
        if e.get("deploy_id") == deploy_id and e["event"] in events:
            return str(e["event"])
    return ""


def last_smoke(entries: list[dict[str, Any]], deploy_id: str) -> str:
    """The last smoke verdict of ``deploy_id`` ("smoke passed" / "smoke failed"), '' when none."""
    return _last_of(entries, deploy_id, ("smoke passed", "smoke failed"))


def last_health(entries: list[dict[str, Any]], deploy_id: str) -> str:
    """The last health verdict of ``deploy_id`` after a restart ("health passed" / "health
    failed"; a failed restart counts as failed health), '' when none."""
    last = _last_of(entries, deploy_id, ("health passed", "health failed", "restart failed"))
    return "health failed" if last == "restart failed" else last


def previous_current(entries: list[dict[str, Any]]) -> str | None:
    """The release that was current before the newest promotion still in effect, as the
    journal says (never by folder time or name)."""
    for e in reversed(entries):
        if e["event"] in ("promoted", "reverted"):
            prev = e.get("previous")
            return str(prev) if isinstance(prev, str) else None
    return None
