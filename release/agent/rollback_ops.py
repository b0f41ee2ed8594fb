"""Rollback: remove exactly what one deploy created, and prove the parent folder is back to its prior state."""

from __future__ import annotations

import os

from . import journal, shared_paths
from .fsutil import _lstat_kind, list_tree, listing_sha256, mounts_inside, open_dir, path_kind, remove_tree_at
from .leftovers import _remove_marked, clean_leftovers, make_marked_dir
from .lock import Lock, lock_wait
from .names import checked_id, tree_sha256
from .parallel_tree import ParallelTree
from .pointer_ops import _forget_promoted, pointer_state, read_promoted, restore_pointer
from .protocol import DEPLOY_MANIFEST, PREFIX, AgentError, _io_error, checkpoint, refuse
from .release_tree import _added, _listed_paths, _manifest_of, _release_entries, _remove_parent_if_ours, names_sha256, remove_root_if_ours

TYPE_CHECKING = False  # typing and the message shapes are for the type checker: not imported on the target
if TYPE_CHECKING:
    from .fsutil import Listing
    from .messages import (
        RollbackRequest,
        RollbackResult,
    )


def op_rollback(req: RollbackRequest) -> RollbackResult:
    if req.get("from_host"):  # no controller record: the host's own records describe the rollback
        found = request_from_host(req["root"], req["deploy_id"], str(req.get("journal_event") or ""))
        asked = ("break_lock", "lock_wait", "journal", "discard_added", "service")  # what the caller decides, not the host's records
        req = {**found, **{k: v for k, v in req.items() if k in asked}}  # type: ignore[typeddict-item]
    root = req["root"]
    target = req["target"]
    parent, name = os.path.split(target)
    deploy_id = checked_id(req["deploy_id"])
    if not os.path.isdir(root):
        raise AgentError(3, f"target root does not exist: {root}", "nothing to roll back", kind="absent")
    try:
        with Lock(root, deploy_id, "rollback", bool(req.get("break_lock")), lock_wait(req)) as lock:
            result = _rollback_locked(req, root, parent, name, target, deploy_id)
            journal.append(root, "pruned" if req.get("journal_event") == "pruned" else "rolled back", deploy_id, req, target=target)
            # the last release gone: the root create_root made goes too (the host's own marker
            # says so), with the folders above it that it made, each only while it is empty
            result["removed_root"] = remove_root_if_ours(root, lock.release)
            if result["removed_root"] and not result["parent_restored"] and parent == root:
                result["parent_restored"] = True  # the root did not exist before the deploy, and does not now
            return result
    except OSError as exc:
        raise _io_error(exc, f"rollback of {target} failed") from None


def _not_in_use(root: str, target: str) -> None:
    """Prune decided from a status read before this lock was taken: what it removes is checked
    again as the host is now. The release ``current`` points at, or the journal's previous
    one, is never pruned (a promote or a rollback --to-previous may have run in between)."""
    current = os.path.join(root, "current")
    real = os.path.realpath(target)
    why = ""
    if path_kind(current) == "symlink" and os.path.realpath(current) == real:
        why = "current"
    else:
        previous = journal.previous_current(journal.read(root)[0])
        if previous and os.path.realpath(os.path.join(root, previous)) == real:
            why = "the previous release"
    if why:
        raise AgentError(4, f"prune will not remove {target}: it is {why} now (it changed since prune looked); nothing was removed", "", kind="in-use")


def _rollback_locked(req: RollbackRequest, root: str, parent: str, name: str, target: str, deploy_id: str) -> RollbackResult:
    cleaned = clean_leftovers(parent) + (clean_leftovers(root) if parent != root else [])
    finished = [c for c in cleaned if os.path.basename(c).startswith(f"{PREFIX}trash-{deploy_id}")]
    try:
        parent_fd = open_dir(parent)
    except FileNotFoundError:
        parent_fd = -1
    try:
        kind = _lstat_kind(name, parent_fd) if parent_fd >= 0 else "absent"
        if kind == "absent":
            # a killed rollback had moved the release to its trash (now gone), or a rollback
            # killed after it removed it, or a hand: the goal holds; what the deploy made
            # around it (a parent folder it created) is finished here
            result = _rolled_back(req, root, parent, target, {}, finished=bool(finished), pointer=pointer_state(root))
            result["already_removed"] = not finished
            return result
        if kind != "directory":
            raise refuse(f"refusing to remove {target}: it is a {kind}, not the folder this tool created", "inspect it by hand")
        if req.get("journal_event") == "pruned":
            _not_in_use(root, target)
        mounted = mounts_inside(target)
        if mounted:  # --discard-added included: what is mounted there is another filesystem's, or a folder from elsewhere
            others = f" (and {len(mounted) - 1} more)" if len(mounted) > 1 else ""
            raise refuse(
                f"refusing to remove {target}: {mounted[0]} inside it is a mount point{others}; what is mounted is not ours to delete; nothing was removed",
                f"unmount {mounted[0]} first",
            )
        folder_fd = open_dir(name, parent_fd)
        tree: ParallelTree | None = None
        try:
            got = _manifest_of(folder_fd)
            if got is None:
                raise refuse(f"refusing to remove {target}: it has no readable {DEPLOY_MANIFEST}, so this tool did not create it", "inspect it by hand")
            manifest, manifest_sha = got
            if manifest.get("deploy_id") != deploy_id:
                raise refuse(
                    f"refusing to remove {target}: its {DEPLOY_MANIFEST} names deploy {manifest.get('deploy_id')!r}, the record names {deploy_id!r}",
                    "roll back with the matching --deploy-id",
                )
            recorded = req.get("manifest_sha256")
            drift = bool(recorded) and recorded != manifest_sha
            # the controller's record proves the deploy created the folder; the on-target
            # manifest (which a smoke check could edit) is only asked when there is no record
            if not recorded and manifest.get("pre_existed") != "false":
                raise refuse(f"refusing to remove {target}: its manifest does not prove it was created by the deploy", "inspect it by hand")
            # listed by two processes at once; they remove only after the check below passed
            tree = ParallelTree(folder_fd)
            listing: Listing = tree.listing
            if req.get("names_sha256") and names_sha256(listing) == req.get("names_sha256"):
                added, added_check = [], "names"  # exactly the names the deploy wrote (the record says which)
            else:
                added_check = "manifest"
                found, dirs = _listed_paths(listing)
                entries, env_entries, env_dirs = _release_entries(folder_fd)
                trusted = req.get("tree_sha256") in (None, "") or tree_sha256(entries) == req.get("tree_sha256")
                trusted = trusted and (not env_entries or tree_sha256(env_entries) == manifest.get("env_sha256"))
                if trusted:
                    added = _added(found, dirs, set(entries) | set(env_entries) | set(shared_paths.from_manifest(manifest)), env_dirs)
                else:
                    added = ["(BUNDLE-MANIFEST.json or ENVIRONMENT-MANIFEST.json changed: the release's own file list cannot be trusted)"]
            if added and not req.get("discard_added"):
                shown = ", ".join(p if len(p) <= 200 else f"{p[:100]}...{p[-100:]}" for p in added[:10]) + (
                    f" and {len(added) - 10} more" if len(added) > 10 else ""
                )
                raise refuse(
                    f"refusing to remove {target}: it holds {len(added)} entries the deploy did not create: {shown}; nothing was removed",
                    "move them out first, or rerun with --discard-added to delete them with the release",
                )
            known = read_promoted(root, deploy_id)  # the host's own record wins: the controller may never have seen the promote answer
            pointer, back = restore_pointer(root, target, known["previous"] if known else req.get("previous_current"))
            if pointer != "untouched":
                # the journal follows the pointer: `current` is what it was before this release
                # was promoted, and so is the previous release (a later --to-previous never
                # steps back to the release that is current)
                prior = known.get("prior_previous") if known else None
                journal.append(root, "reverted", deploy_id, req, current=back, previous=prior, replaced=os.path.relpath(target, root), reason="rollback")
            _forget_promoted(root, deploy_id)
            checkpoint("rollback:pointer")
            spec = req.get("service")
            up = None
            if back and spec and (spec.get("restart") or spec.get("checks")):
                # `current` went back to another release: the application is restarted there and
                # health-checked (as after --to-previous) before the files it ran from are removed
                from . import service_ops

                up = service_ops.bring_up(root, back, spec, req, deploy_id, "rollback")
                again: Listing = {}
                list_tree(folder_fd, "", again)
                if names_sha256(again) != names_sha256(listing) and not req.get("discard_added"):  # written into meanwhile: never deleted unasked
                    raise refuse(
                        f"refusing to remove {target}: entries were added to it or removed while the application restarted on {back}"
                        f" (`current` points there now); nothing was removed",
                        "look at what changed there, then roll back again (--discard-added deletes what was added)",
                    )
                checkpoint("rollback:restarted")
            trash = make_marked_dir(parent_fd, "trash", deploy_id, "rollback")
            checkpoint("rollback:trash")
            os.rename(name, f"{trash}/release", src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
            os.fsync(parent_fd)
            checkpoint("rollback:renamed")
            tree.remove()  # the subtrees, by the processes that listed them (the folder's descriptor is the same after the rename)
        finally:
            if tree is not None:
                tree.close()
            os.close(folder_fd)
        trash_fd = open_dir(trash, parent_fd)
        try:  # the rest, as the check listed it: the top folders, and whatever changed since
            remove_tree_at(trash_fd, "release", listing=tree.top)
        finally:
            os.close(trash_fd)
        _remove_marked(parent_fd, trash)
        checkpoint("rollback:removed")
        result = _rolled_back(req, root, parent, target, manifest, pointer=pointer, drift=drift, discarded=added, added_check=added_check)
        if back:
            result["back_to"] = back
        if up is not None:
            result["service"] = up
        return result
    finally:
        if parent_fd >= 0:
            os.close(parent_fd)


def _rolled_back(
    req: RollbackRequest,
    root: str,
    parent: str,
    target: str,
    manifest: dict[str, str],
    *,
    pointer: str,
    finished: bool = False,
    drift: bool = False,
    discarded: list[str] | None = None,
    added_check: str = "",
) -> RollbackResult:
    removed_parent = False
    if req.get("remove_parent_if_empty") and parent != root and os.path.isdir(parent):
        root_fd = open_dir(root)
        try:
            removed_parent = _remove_parent_if_ours(root_fd, os.path.relpath(parent, root))
        finally:
            os.close(root_fd)
    after = listing_sha256(parent)
    before = manifest.get("parent_listing_sha256_before") or str(req.get("parent_listing_sha256_before") or "")
    parent_existed = manifest.get("parent_existed", "true" if req.get("parent_existed", True) else "false")
    return {
        "removed": target,
        "pointer": pointer,
        "current": pointer_state(root),
        "removed_parent": removed_parent,
        "finished_interrupted": finished,
        "manifest_drift": drift,
        "discarded": discarded or [],
        "parent_listing_sha256_before": before,
        "parent_listing_sha256_after": after,
        "parent_restored": after == before or (removed_parent and parent_existed == "false"),
        "added_check": added_check,
        "already_removed": False,
        # `current` is where it was before the release was promoted (or untouched): not when
        # it had to be removed because the release it pointed at before is gone
        "pointer_restored": not pointer.startswith("removed (the previous"),
    }


def request_from_host(root: str, deploy_id: str, journal_event: str = "") -> RollbackRequest:
    """The rollback of ``deploy_id`` as the host's own records describe it (its release's
    DEPLOY-MANIFEST, found under ``root``), for a rollback without the controller's record
    (the Ansible collection, or the CLI for a deploy the collection made). The manifest's
    digest is not known here, so the rollback asks the manifest itself that the deploy
    created the folder (``pre_existed: false``), and the names it recorded decide that
    nothing was added."""
    from .status_ops import release_of

    wanted = checked_id(deploy_id)
    path, manifest = release_of(root, wanted)
    existed = manifest.get("parent_existed", "true") != "false"
    req: RollbackRequest = {
        "root": root,
        "target": path,
        "deploy_id": wanted,
        "previous_current": None,  # the host's own promotion record decides (read_promoted)
        "remove_parent_if_empty": not existed,
        "parent_existed": existed,
        "parent_listing_sha256_before": manifest.get("parent_listing_sha256_before", ""),
        "manifest_sha256": "",
        "tree_sha256": manifest.get("tree_sha256", ""),
        "names_sha256": manifest.get("names_sha256", ""),
        "discard_added": False,
        "break_lock": False,
    }
    if journal_event:
        req["journal_event"] = journal_event
    return req
