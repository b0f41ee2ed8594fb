"""Controller state under ``.release/``: deploy records and an append-only audit log.

    .release/deploys/<deploy_id>.json   one record per deploy, rewritten atomically
    .release/deploys/<deploy_id>.open   a marker: the record may still change (not yet
                                        rolled back or failed); ``.markers`` says they are kept
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
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

from .errors import BlockedError, RefusedError
from .redact import redact_obj


class Status(StrEnum):
    """Where a deploy record stands (a closed set: a record holds one of these, as text)."""

    STARTED = "started"  # written before the target was asked: a run killed here left it
    UNKNOWN = "unknown"  # the answer was lost: settled with the target before anything acts
    DEPLOYED = "deployed"
    FAILED = "failed"
    ROLLED_BACK = "rolled-back"


LIVE_STATUSES = (Status.DEPLOYED.value,)
FINAL_STATUSES = (Status.ROLLED_BACK.value, Status.FAILED.value)  # a record with these never changes again


def landed_fields(facts: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a deploy record whose release landed: the one constructor, from the
    agent's answer (deploy) or from the release's own DEPLOY-MANIFEST.txt and its digest
    (reconciliation), so a reconciled record holds what a seen one holds (the names and
    environment digests included: rollback's exact checks need them)."""

    def flag(value: object) -> bool:
        return value is True or str(value).lower() == "true"

    return {
        "status": Status.DEPLOYED.value,
        "parent_existed": flag(facts.get("parent_existed", True)),
        "parent_listing_sha256_before": str(facts.get("parent_listing_sha256_before", "")),
        "files": int(str(facts.get("files", 0) or 0)),
        "tree_sha256": str(facts.get("tree_sha256", "")),
        "manifest_sha256": str(facts.get("manifest_sha256", "")),
        "env_sha256": str(facts.get("env_sha256", "")),
        "env_packages": int(str(facts.get("env_packages", 0) or 0)),
        "names_sha256": str(facts.get("names_sha256", "")),
    }


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
    try:
        with tmp.open("w") as f:
            json.dump(redact_obj(data), f, indent=1, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk: the record keeps its last whole version, no stray file
        tmp.unlink(missing_ok=True)
        raise


class State:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.corrupt: list[str] = []
        self._records: list[dict[str, Any]] | None = None  # read once per run, until a save
        self._open: list[dict[str, Any]] | None = None

    @property
    def deploys(self) -> Path:
        return self.root / "deploys"

    def save(self, record: dict[str, Any]) -> None:
        """Write the record; its ``.open`` marker is made before a record that may still
        change is written and removed only after a final one was, so the markers always
        name at least every open record (a crash between the two leaves one marker too
        many, which costs one read)."""
        private_dir(self.deploys)
        self._keep_markers()
        marker = self.deploys / f"{record['deploy_id']}.open"
        final = record.get("status") in FINAL_STATUSES
        if not final:
            marker.touch(mode=0o600)
        write_json(self.deploys / f"{record['deploy_id']}.json", record)
        if final:
            marker.unlink(missing_ok=True)
        self._records = None
        self._open = None

    def has(self, deploy_id: str) -> bool:
        """Whether a record of ``deploy_id`` exists (it may still be unreadable: ``load`` says)."""
        return "/" not in deploy_id and not deploy_id.startswith(".") and (self.deploys / f"{deploy_id}.json").is_file()

    def load(self, deploy_id: str) -> dict[str, Any]:
        path = self.deploys / f"{deploy_id}.json"
        if not self.has(deploy_id):
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

    def _keep_markers(self) -> None:
        """Start keeping ``.open`` markers in a state folder written before them: one full
        read marks every open record, then ``.markers`` says the markers are complete."""
        flag = self.deploys / ".markers"
        if flag.exists():
            return
        for r in self.records():
            if r.get("status") not in FINAL_STATUSES:
                (self.deploys / f"{r['deploy_id']}.open").touch(mode=0o600)
        flag.touch(mode=0o600)

    def open_records(self) -> list[dict[str, Any]]:
        """The records that may still change (deployed, started, unknown), oldest first,
        read through their markers: the cost follows the releases still on the targets,
        not every deploy ever made."""
        if self._open is not None:
            return list(self._open)
        if not (self.deploys / ".markers").exists():
            out = [r for r in self.records() if r.get("status") not in FINAL_STATUSES]
        else:
            out = []
            for marker in sorted(self.deploys.glob("*.open")):
                try:
                    data = json.loads(marker.with_suffix(".json").read_text())
                except FileNotFoundError:
                    continue  # a crash between marker and record: no record yet
                except (OSError, ValueError, UnicodeDecodeError):
                    data = None
                if not isinstance(data, dict) or not isinstance(data.get("deploy_id"), str):
                    from .proc import log

                    log.warning("skipping unreadable deploy record %s", marker.with_suffix(".json"))
                    continue
                if data.get("status") not in FINAL_STATUSES:
                    out.append(data)
            out.sort(key=lambda r: str(r["deploy_id"]))
        self._open = out
        return list(out)

    def last(self, statuses: tuple[str, ...] = LIVE_STATUSES) -> dict[str, Any]:
        live = [r for r in (self.open_records() if set(statuses).isdisjoint(FINAL_STATUSES) else self.records()) if r.get("status") in statuses]
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
