"""Ops that read (status, verify, inspect) or tidy what killed runs left; none changes a release."""

from __future__ import annotations

import os

from . import journal, shared_paths
from .fsutil import (
    hash_at,
    open_dir,
    path_kind,
    walk,
)
from .leftovers import clean_leftovers, leftovers
from .lock import Lock, _alive, lock_wait, read_lock
from .names import checked_folder_name, checked_id, tree_sha256
from .pointer_ops import _is_release, pointer_state
from .protocol import PREFIX, AgentError, _hostname
from .release_tree import OWN_FILES, _manifest_of, _release_entries, _wanted_dirs, read_deploy_manifest

TYPE_CHECKING = False  # typing and the message shapes are for the type checker: not imported on the target
if TYPE_CHECKING:
    from .messages import (
        InspectRequest,
        InspectResult,
        ReleaseInfo,
        StatusRequest,
        StatusResult,
        TidyRequest,
        TidyResult,
        VerifyRequest,
        VerifyResult,
    )


def op_tidy(req: TidyRequest) -> TidyResult:
    """Under the lock, remove what killed runs left in the root and in the releases folder."""
    root = req["root"]
    with Lock(root, checked_id(req["deploy_id"]), "tidy", bool(req.get("break_lock")), lock_wait(req)):
        cleaned = clean_leftovers(root)
        if req.get("parent"):
            cleaned += clean_leftovers(os.path.join(root, checked_folder_name(req["parent"], "the releases folder")))
        return {"cleaned": cleaned}


def op_inspect(req: InspectRequest) -> InspectResult:
    """What the target says about one deploy: does its release exist, is it that deploy's,
    is a run of it still holding the lock. Used to reconcile an outcome the controller did not see."""
    root, target, deploy_id = req["root"], req["target"], checked_id(req["deploy_id"])
    lock = read_lock(root) if os.path.isdir(root) else None
    running = bool(
        lock and lock.get("deploy_id") == deploy_id and lock.get("host") == _hostname() and _alive(int(lock.get("pid", -1) or -1), str(lock.get("started", "")))
    )
    out: InspectResult = {"target": target, "kind": path_kind(target), "running": running, "manifest": None, "manifest_sha256": ""}
    if out["kind"] == "directory":
        try:
            fd = open_dir(target)
        except OSError:
            return out
        try:
            got = _manifest_of(fd)
        finally:
            os.close(fd)
        if got:
            out["manifest"], out["manifest_sha256"] = got
    return out


def op_status(req: StatusRequest) -> StatusResult:
    root = req["root"]
    releases: list[ReleaseInfo] = []
    current = os.path.join(root, "current")
    cur_real = os.path.realpath(current) if path_kind(current) == "symlink" else None
    left: list[str] = []
    for parent in (root, os.path.join(root, "releases")):
        if path_kind(parent) != "directory":
            continue
        left += [os.path.join(parent, n) for n in leftovers(parent)]
        for name in sorted(os.listdir(parent)):
            path = os.path.join(parent, name)
            if name.startswith(PREFIX) or not _is_release(path):
                continue
            try:
                m = read_deploy_manifest(path)
            except (OSError, AgentError):
                continue
            releases.append(
                {
                    "path": path,
                    "version": m.get("version"),
                    "head": m.get("head"),
                    "release_stamp": m.get("release_stamp"),
                    "deploy_id": m.get("deploy_id"),
                    "strategy": m.get("strategy"),
                    "promoted": cur_real == os.path.realpath(path),
                    "signed_by": m.get("signed_by", ""),
                    "journal": "",
                    "order": None,
                    "smoke": "",
                    "health": "",
                }
            )
    others = sorted(n for n in os.listdir(root) if not n.startswith(PREFIX)) if os.path.isdir(root) else []
    entries, skipped = journal.read(root)
    state = journal.states(entries)
    order = journal.deploy_order(entries)
    for r in releases:
        did = str(r["deploy_id"])
        r["journal"] = state.get(did, {}).get("event", "")
        r["order"] = order.get(did)
        r["smoke"] = journal.last_smoke(entries, did)
        r["health"] = journal.last_health(entries, did)
    return {
        "root": root,
        "releases": releases,
        "lock": read_lock(root),
        "entries": others,
        "leftovers": left,
        "current": pointer_state(root),
        "previous": journal.previous_current(entries),
        "journal_skipped_lines": skipped,
    }


def release_of(root: str, deploy_id: str) -> tuple[str, dict[str, str]]:
    """The release of ``deploy_id`` under ``root`` and its DEPLOY-MANIFEST, as the host has
    them (for what a controller without its own record asks: the Ansible collection)."""
    wanted = checked_id(deploy_id)
    found = [r for r in op_status({"root": root})["releases"] if r.get("deploy_id") == wanted]
    if not found:
        raise AgentError(3, f"no release of deploy {wanted} under {root}", "`release status` (or release.pipeline.status) lists them", kind="absent")
    path = str(found[0]["path"])
    return path, read_deploy_manifest(path)


def op_verify(req: VerifyRequest) -> VerifyResult:
    """Re-hash a release against its BUNDLE-MANIFEST (files, links, folders) and its DEPLOY-MANIFEST
    against the controller's record. Only regular files are ever opened: anything else is drift."""
    target = req["target"]
    if path_kind(target) != "directory":
        raise AgentError(3, f"no deployed release at {target}", "deploy first, or pass --deploy-id")
    fd = open_dir(target)
    try:
        got_manifest = _manifest_of(fd)
        bundle_want, env_want, env_dirs = _release_entries(fd)
        # the shared links the deploy made (compared as links, never followed)
        shared = {rel: "link:" + where for rel, where in shared_paths.from_manifest(got_manifest[0] if got_manifest else {}).items()}
        want = {**bundle_want, **env_want, **shared}
        found: dict[str, str] = {}
        dirs: set[str] = set()
        walk(fd, "", found, dirs)
        got: dict[str, str] = {}
        others: list[str] = []
        for rel, kind in found.items():
            if rel in OWN_FILES:
                continue
            if kind == "l":
                got[rel] = "link:" + os.readlink(rel, dir_fd=fd)
            elif kind == "f":
                got[rel] = hash_at(fd, rel)
            else:
                others.append(rel)
                got[rel] = "special"
    finally:
        os.close(fd)
    wanted_dirs = _wanted_dirs(want) | env_dirs
    added = sorted(set(got) - set(want)) + sorted(d + "/" for d in dirs - wanted_dirs)
    removed = sorted(set(want) - set(got))
    changed = sorted(p for p in set(got) & set(want) if got[p] != want[p])
    dm, dm_sha = got_manifest if got_manifest else ({}, "")
    recorded_tree = req.get("tree_sha256") or dm.get("tree_sha256")
    manifest_ok = bool(bundle_want) and tree_sha256(bundle_want) == dm.get("tree_sha256") == recorded_tree
    if env_want or dm.get("env_sha256"):
        manifest_ok = manifest_ok and tree_sha256(env_want) == dm.get("env_sha256") == (req.get("env_sha256") or dm.get("env_sha256"))
    deploy_manifest_ok = not req.get("manifest_sha256") or req.get("manifest_sha256") == dm_sha
    return {
        "target": target,
        "added": added,
        "removed": removed,
        "changed": changed,
        "special": sorted(others),
        "manifest_intact": manifest_ok,
        "deploy_manifest_intact": deploy_manifest_ok,
        "files": len(got),
        "clean": not (added or removed or changed) and manifest_ok and deploy_manifest_ok,
    }
