"""Controller state under ``.release/``: deploy records and an append-only audit log.

    .release/deploys/<deploy_id>.json   one record per deploy, rewritten atomically
    .release/audit.log                  JSON lines, append-only: who, when, what, result
    .release/reports/<stamp>/           smoke reports (mode 0700)

Every folder is created mode 0700 and every record passes through the redactor.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import stat
from pathlib import Path
from typing import Any

from .errors import BlockedError, RefusedError
from .redact import redact_obj

LIVE_STATUSES = ("deployed",)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) mode 0700; an existing folder keeps its mode.

    A folder that others may write (world-writable, or group-writable and not ours) is
    refused: anybody could plant records or reports there.
    """
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            pass
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        st = path.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise RefusedError(f"state folder {path} is not a folder", hint="move it away or set `state` in the config")
    if st.st_mode & stat.S_IWOTH or (st.st_mode & stat.S_IWGRP and st.st_uid != os.getuid()):
        raise RefusedError(
            f"state folder {path} may be written by other users (mode {stat.S_IMODE(st.st_mode):o}): refused",
            hint=f"chmod go-w {path}, or set `state` to a private folder",
        )
    return path


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w") as f:
        json.dump(redact_obj(data), f, indent=1, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class State:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.corrupt: list[str] = []
        self._records: list[dict[str, Any]] | None = None  # read once per run, until a save

    @property
    def deploys(self) -> Path:
        return self.root / "deploys"

    def save(self, record: dict[str, Any]) -> None:
        private_dir(self.deploys)
        write_json(self.deploys / f"{record['deploy_id']}.json", record)
        self._records = None

    def load(self, deploy_id: str) -> dict[str, Any]:
        path = self.deploys / f"{deploy_id}.json"
        if "/" in deploy_id or deploy_id.startswith(".") or not path.is_file():
            raise BlockedError(f"no deploy record {deploy_id!r} in {self.deploys}", hint="list deploys with `release status`")
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError, UnicodeDecodeError):
            raise BlockedError(f"deploy record {path} is unreadable", hint="restore it from a backup, or inspect the target by hand") from None
        if not isinstance(data, dict):
            raise BlockedError(f"deploy record {path} is malformed", hint="restore it from a backup")
        return data

    def records(self) -> list[dict[str, Any]]:
        """Every readable record, oldest first; a corrupt one is skipped (and named on stderr)."""
        if self._records is not None:
            return list(self._records)
        if not self.deploys.is_dir():
            return []
        self.corrupt = []
        out = []
        for p in self.deploys.glob("*.json"):
            try:
                data = json.loads(p.read_text())
                if isinstance(data, dict) and isinstance(data.get("deploy_id"), str):
                    out.append(data)
                    continue
            except (OSError, ValueError, UnicodeDecodeError):
                pass
            self.corrupt.append(str(p))
            from .proc import log

            log.warning("skipping unreadable deploy record %s", p)
        self._records = sorted(out, key=lambda r: str(r["deploy_id"]))
        return list(self._records)

    def last(self, statuses: tuple[str, ...] = LIVE_STATUSES) -> dict[str, Any]:
        live = [r for r in self.records() if r.get("status") in statuses]
        if not live:
            raise BlockedError(f"no deploy to act on in {self.deploys}", hint="deploy first (nox -s deploy), or pass --deploy-id")
        return live[-1]

    def pick(self, deploy_id: str | None) -> dict[str, Any]:
        return self.load(deploy_id) if deploy_id else self.last()

    def audit(self, op: str, **fields: Any) -> None:
        private_dir(self.root)
        entry = {"time": now_iso(), "user": getpass.getuser(), "controller": os.uname().nodename, "op": op, **fields}
        line = json.dumps(redact_obj(entry), sort_keys=True) + "\n"
        fd = os.open(self.root / "audit.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
