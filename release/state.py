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
import socket
from pathlib import Path
from typing import Any

from .errors import BlockedError
from .redact import redact_obj

LIVE_STATUSES = ("started", "deployed")


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) mode 0700; tighten it if it already exists and is ours."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_uid == os.getuid():
        path.chmod(0o700)
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

    @property
    def deploys(self) -> Path:
        return self.root / "deploys"

    def save(self, record: dict[str, Any]) -> None:
        private_dir(self.deploys)
        write_json(self.deploys / f"{record['deploy_id']}.json", record)

    def load(self, deploy_id: str) -> dict[str, Any]:
        path = self.deploys / f"{deploy_id}.json"
        if "/" in deploy_id or not path.is_file():
            raise BlockedError(f"no deploy record {deploy_id!r} in {self.deploys}", hint="list deploys with `release status`")
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    def records(self) -> list[dict[str, Any]]:
        if not self.deploys.is_dir():
            return []
        out = [json.loads(p.read_text()) for p in self.deploys.glob("*.json")]
        return sorted(out, key=lambda r: str(r["deploy_id"]))

    def last(self, statuses: tuple[str, ...] = LIVE_STATUSES) -> dict[str, Any]:
        live = [r for r in self.records() if r.get("status") in statuses]
        if not live:
            raise BlockedError(f"no deploy to act on in {self.deploys}", hint="deploy first (nox -s deploy), or pass --deploy-id")
        return live[-1]

    def pick(self, deploy_id: str | None) -> dict[str, Any]:
        return self.load(deploy_id) if deploy_id else self.last()

    def audit(self, op: str, **fields: Any) -> None:
        private_dir(self.root)
        entry = {"time": now_iso(), "user": getpass.getuser(), "controller": socket.gethostname(), "op": op, **fields}
        line = json.dumps(redact_obj(entry), sort_keys=True) + "\n"
        fd = os.open(self.root / "audit.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
