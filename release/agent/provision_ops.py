"""Ops provision and unprovision (G4): the runtime skeleton and its exact undo."""

from __future__ import annotations

import hashlib
import os

from .fsutil import _write_new, hash_at, open_dir, path_kind
from .lock import Lock, lock_wait
from .names import name_problem
from .protocol import AgentError, refuse

TYPE_CHECKING = False  # typing and the message shapes are for the type checker: not imported on the target
if TYPE_CHECKING:
    from .messages import Created, ProvisionRequest, ProvisionResult, UnprovisionRequest, UnprovisionResult


# ----------------------------------------------------------------------------- provision (G4)


def _make_dirs(path: str, created: list[Created]) -> None:
    """mkdir -p that records every folder it creates, and never touches what exists."""
    missing = []
    p = path
    while not os.path.lexists(p):
        missing.append(p)
        p = os.path.dirname(p)
    if path_kind(p) != "directory":
        raise refuse(f"cannot provision under {p}: it is a {path_kind(p)}, not a folder", "move it away by hand")
    for d in reversed(missing):
        os.mkdir(d, 0o755)
        created.append({"type": "dir", "path": d})


def _inside(root: str, rel: str, what: str) -> str:
    """``root``/``rel`` for a relative, '..'-free ``rel``; the resolved folder must stay under the resolved root."""
    why = name_problem(rel.strip("/") if rel else "")
    if why or rel.startswith("/"):
        raise AgentError(2, f"{what} {rel!r} is not a path inside provision.root ({why or 'absolute path'})", "use a relative path without '..'")
    path = os.path.join(root, rel)
    real_root = os.path.realpath(root)
    probe = path
    while not os.path.lexists(probe):
        probe = os.path.dirname(probe)
    inside = probe == root or probe.startswith(root.rstrip("/") + "/")
    real = os.path.realpath(probe)
    if inside and real != real_root and not real.startswith(real_root.rstrip("/") + "/"):
        raise refuse(f"{what} {rel!r} resolves outside provision.root ({real})", "a link under provision.root leads elsewhere; inspect it")
    return path


def op_provision(req: ProvisionRequest) -> ProvisionResult:
    root = req["root"]
    created: list[Created] = []
    existed: list[str] = []
    lock_root = req["lock_root"]
    if req.get("create_lock_root"):
        os.makedirs(lock_root, exist_ok=True)
    if not os.path.isdir(lock_root):
        raise AgentError(3, f"target root does not exist: {lock_root} (provision locks it)", "create it, or set target.create_root = true")
    with Lock(lock_root, req["id"], "provision", bool(req.get("break_lock")), lock_wait(req)):
        try:
            for d in req["dirs"]:
                path = _inside(root, d, "provision.dirs entry")
                if os.path.lexists(path):
                    if path_kind(path) != "directory":
                        raise refuse(f"{path} exists and is a {path_kind(path)}, not a folder", "move it away by hand")
                    existed.append(path)
                    continue
                _make_dirs(path, created)
            if req.get("config_file"):
                path = _inside(root, req["config_file"], "provision.config_file")
                if os.path.lexists(path):
                    existed.append(path)
                else:
                    _make_dirs(os.path.dirname(path), created)
                    data = req["config_text"].encode()
                    parent_fd = open_dir(os.path.dirname(path))
                    try:
                        _write_new(parent_fd, os.path.basename(path), data, 0o644)
                    finally:
                        os.close(parent_fd)
                    created.append({"type": "file", "path": path, "sha256": hashlib.sha256(data).hexdigest()})
        except BaseException:
            _undo(created)  # nothing half-done: take back what this run made
            raise
    return {"created": created, "existed": existed}


def _undo(created: list[Created]) -> list[str]:
    removed = []
    for entry in reversed(created):
        path = entry["path"]
        if entry["type"] == "file":
            if path_kind(path) != "file":
                raise refuse(f"{path} is no longer the file provision created", "inspect it by hand")
            if hash_at(None, path) != entry["sha256"]:  # streamed, no link followed: whatever now lies there
                raise refuse(f"{path} was changed since provision created it; not removed", "remove it by hand if it is not needed")
            os.unlink(path)
        else:
            if path_kind(path) != "directory":
                raise refuse(f"{path} is no longer the folder provision created", "inspect it by hand")
            if os.listdir(path):
                raise refuse(f"{path} is not empty (it holds data provision did not create); not removed", "empty it by hand first")
            os.rmdir(path)
        removed.append(path)
    return removed


def op_unprovision(req: UnprovisionRequest) -> UnprovisionResult:
    created = req["created"]
    # check everything first, so a refusal removes nothing
    for entry in created:
        path = entry["path"]
        want = "file" if entry["type"] == "file" else "directory"
        if path_kind(path) != want:
            raise refuse(f"{path} is no longer the {want} provision created", "inspect it by hand")
        if want == "directory":
            inner = {os.path.join(path, n) for n in os.listdir(path)}
            if inner - {e["path"] for e in created}:
                raise refuse(f"{path} holds entries provision did not create; nothing was removed", "empty it by hand first")
    with Lock(req["lock_root"], req["id"], "unprovision", bool(req.get("break_lock")), lock_wait(req)):
        return {"removed": _undo(created)}
