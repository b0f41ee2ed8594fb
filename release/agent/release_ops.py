"""Ops on releases: facts, deploy, rollback, promote, status, verify, inspect, tidy."""

from __future__ import annotations

import hashlib
import os
import stat
import sys

from . import env_build, jsonio
from .fsutil import (
    _lstat_kind,
    _read_regular,
    _write_new,
    fsync_dir,
    hash_at,
    list_tree,
    listing_sha256,
    open_dir,
    path_kind,
    remove_tree_at,
    rename_noreplace,
    sync_filesystem,
    unlink_listed,
    walk,
)
from .leftovers import _remove_marked, clean_leftovers, leftovers, make_marked_dir
from .lock import Lock, _alive, read_lock
from .names import checked_folder_name, checked_id, manifest_entries, manifest_text, name_problem, rollback_command, tree_sha256
from .protocol import BUNDLE_MANIFEST, DEPLOY_MANIFEST, ENV_MANIFEST, PREFIX, AgentError, _hostname, _io_error, checkpoint, refuse, say
from .tarsafe import MAX_MANIFEST, Verified, finish, scan

TYPE_CHECKING = False  # typing and the message shapes are for the type checker: not imported on the target
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from .fsutil import Listing
    from .messages import (
        DeployRequest,
        DeployResult,
        FactsRequest,
        InspectRequest,
        InspectResult,
        PromoteRequest,
        PromoteResult,
        RepointRequest,
        RepointResult,
        RollbackRequest,
        RollbackResult,
        StatusRequest,
        TidyRequest,
        TidyResult,
        VerifyRequest,
        VerifyResult,
    )


def op_facts(req: FactsRequest) -> dict[str, Any]:
    root = req["root"]
    parent = os.path.join(root, req.get("parent", "")) if req.get("parent") else root
    target = os.path.join(parent, req["dir"]) if req.get("dir") else ""
    return {
        "host": _hostname(),
        "python": sys.version.split()[0],
        "root": root,
        "root_exists": os.path.isdir(root),
        "parent": parent,
        "parent_listing_sha256": listing_sha256(parent),
        "target": target,
        "target_kind": path_kind(target) if target else "",
        "lock": read_lock(root),
        "interpreter": interpreter(),
        "deployed_env": deployed_env(root, parent),
    }


def deployed_env(root: str, parent: str) -> dict[str, Any]:
    """The environment ({name: version}) of the release in service: the one ``current`` points
    at, else the newest release under ``parent``; {} when there is none."""
    current = os.path.join(root, "current")
    candidates = [os.path.realpath(current)] if path_kind(current) == "symlink" else []
    if not candidates and os.path.isdir(parent):
        found = []
        for name in os.listdir(parent):
            path = os.path.join(parent, name)
            if not name.startswith(PREFIX) and path_kind(os.path.join(path, DEPLOY_MANIFEST)) == "file":
                try:
                    found.append((read_deploy_manifest(path).get("release_stamp", ""), path))
                except (OSError, AgentError):
                    continue
        candidates = [p for _, p in sorted(found, reverse=True)[:1]]
    for path in candidates:
        try:
            fd = open_dir(path)
        except OSError:
            continue
        try:
            bm = jsonio.loads(_read_regular(fd, BUNDLE_MANIFEST, MAX_MANIFEST))
        except (OSError, ValueError, AgentError):
            continue
        finally:
            os.close(fd)
        env = bm.get("environment") or {}
        return {"release": path, "packages": {str(p["name"]): str(p["version"]) for p in env.get("packages", [])}}
    return {}


def interpreter() -> dict[str, Any]:
    """What a wheel needs to know of this interpreter: version, implementation, machine, libc."""
    import platform

    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError, AttributeError):
        libc = ""
    if not libc:
        name, version = platform.libc_ver()
        libc = f"{name} {version}".strip()
    return {
        "version": ".".join(map(str, sys.version_info[:3])),
        "implementation": sys.implementation.name,
        "machine": platform.machine(),
        "system": platform.system(),
        "libc": libc,
        "executable": sys.executable,
    }


def op_deploy(req: DeployRequest) -> DeployResult:
    root = req["root"]
    deploy_id = checked_id(req["deploy_id"])
    dirname = checked_folder_name(req["dir"], "target.dir")
    parent_rel = checked_folder_name(req["parent"], "the releases folder") if req.get("parent") else ""
    if not os.path.isdir(root):
        if req.get("create_root"):
            try:
                os.makedirs(root, 0o755, exist_ok=True)
            except OSError as exc:
                raise _io_error(exc, f"cannot create target root {root}") from None
        else:
            raise AgentError(3, f"target root does not exist: {root}", "create it, or set target.create_root = true")
    try:
        with Lock(root, deploy_id, "deploy", bool(req.get("break_lock"))):
            root_fd = open_dir(root)
            try:
                return _deploy_locked(req, root, root_fd, parent_rel, dirname, deploy_id)
            finally:
                os.close(root_fd)
    except OSError as exc:
        raise _io_error(exc, f"deploy to {os.path.join(root, parent_rel, dirname)} failed") from None


def _deploy_locked(req: DeployRequest, root: str, root_fd: int, parent_rel: str, dirname: str, deploy_id: str) -> DeployResult:
    parent = os.path.join(root, parent_rel) if parent_rel else root
    cleaned = clean_leftovers(root)
    parent_existed = True
    if parent_rel:
        kind = _lstat_kind(parent_rel, root_fd)
        if kind == "absent":
            parent_existed = False
        elif kind != "directory":
            raise refuse(f"{parent} is a {kind}, not a folder: a release is never written through it", f"move {parent} away by hand")
        else:
            cleaned += clean_leftovers(parent)
            if _only_parent_marker(parent):
                parent_existed = False  # made by a run that was killed before it could take it back
    before = listing_sha256(parent)
    target = os.path.join(parent, dirname)
    present = not parent_rel or _lstat_kind(parent_rel, root_fd) == "directory"
    parent_fd = open_dir(parent_rel, root_fd) if present and parent_rel else -1
    try:
        kind = _lstat_kind(dirname, parent_fd if parent_fd >= 0 else root_fd) if present else "absent"
        if kind != "absent":
            raise refuse(
                f"target already exists ({kind}): {target}",
                "nothing was changed; choose another target.dir, or remove it yourself if it is not needed",
            )
        if not present:
            os.mkdir(parent_rel, 0o755, dir_fd=root_fd)
        if parent_fd < 0:
            parent_fd = open_dir(parent_rel, root_fd) if parent_rel else os.dup(root_fd)
        if not parent_existed and _lstat_kind(PARENT_MARKER, parent_fd) == "absent":
            _write_new(parent_fd, PARENT_MARKER, jsonio.dumps({"deploy_id": deploy_id}).encode(), 0o644)
        stage = ""
        try:
            stage = make_marked_dir(parent_fd, "tmp", deploy_id, "deploy")
            checkpoint("deploy:staged")
            result = _unpack(req, parent, parent_fd, stage, dirname, target, deploy_id)
            if result.get("shipped"):
                return result
            result["parent"] = parent
            result["parent_existed"] = parent_existed
            result["parent_listing_sha256_before"] = before
            result["cleaned"] = cleaned
            lines = result["manifest"]
            lines["parent_existed"] = "true" if parent_existed else "false"
            lines["parent_listing_sha256_before"] = before
            text = manifest_text(lines)
            stage_fd = open_dir(stage, parent_fd)
            try:
                tree_fd = open_dir("tree", stage_fd)
                try:
                    _write_new(tree_fd, DEPLOY_MANIFEST, text.encode(), 0o644)
                finally:
                    os.close(tree_fd)
                sync_filesystem(stage_fd)  # the release's files are on disk before it appears
                checkpoint("deploy:before-rename")
                rename_noreplace("tree", dirname, stage_fd, parent_fd)
                os.fsync(parent_fd)
            finally:
                os.close(stage_fd)
            checkpoint("deploy:renamed")
            result["manifest_sha256"] = hashlib.sha256(text.encode()).hexdigest()
            return result
        finally:
            if stage:
                _remove_marked(parent_fd, stage)
            if not parent_existed and _lstat_kind(dirname, parent_fd) == "absent":
                _remove_parent_if_ours(root_fd, parent_rel)  # a failed deploy takes back the releases/ folder it made
    finally:
        if parent_fd >= 0:
            os.close(parent_fd)


def _unpack(req: DeployRequest, parent: str, parent_fd: int, stage: str, dirname: str, target: str, deploy_id: str) -> DeployResult:
    """Read the bundle once (checksum first), scan it, write the accepted members into ``stage/tree``."""
    sha = str(req["bundle_sha256"])
    copy = os.path.join(parent, stage, "bundle.tar.gz")
    if req.get("bundle_path") and not req.get("ship_only"):
        # same machine: hash and inflate the bundle where it lies, in one read; what is
        # unpacked are the bytes that were hashed, never the file read again
        say(f"checking {req['bundle']} in place")
        src = os.open(req["bundle_path"], os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        try:
            if not stat.S_ISREG(os.fstat(src).st_mode):  # a FIFO or device swapped in: never read
                raise refuse(f"the bundle {req['bundle_path']} is not a regular file", "deploy a bundle written by `release bundle`")
            verified = Verified.read(src, sha, None, keep=True)
            if not verified.readable:  # too large to keep in memory: work from a private copy
                os.lseek(src, 0, os.SEEK_SET)
                verified = Verified.read(src, sha, copy, keep=False)
        finally:
            os.close(src)
    else:
        say(f"receiving {req['bundle']}")
        verified = Verified.read(sys.stdin.fileno(), sha, copy, keep=not req.get("ship_only"))
        if req.get("ship_only"):
            return {"shipped": True, "bundle_sha256": sha}
    # one pass: each member is checked and written into the private staging folder as it
    # passes; a refusal anywhere leaves only that folder, which the deploy removes
    say("checking and unpacking every member")
    stage_fd = open_dir(stage, parent_fd)
    try:
        os.mkdir("tree", 0o755, dir_fd=stage_fd)
        tree_fd = open_dir("tree", stage_fd)
        try:
            accepted = scan(verified, tree_fd)
            for key in ("name", "version", "commit"):
                want = req["expect"].get(key)
                if want and accepted.manifest.get(key) != want:
                    raise refuse(f"bundle manifest {key} is {accepted.manifest.get(key)!r}, expected {want!r}", "deploy the bundle of the recorded HEAD")
            facts = finish(accepted, tree_fd)
        finally:
            os.close(tree_fd)
    finally:
        os.close(stage_fd)
    del verified
    checkpoint("deploy:extracted")
    env_doc = accepted.manifest.get("environment")
    env_facts: dict[str, Any] = {}
    env_files: set[str] = set()
    env_dirs: set[str] = set()
    if env_doc:
        say("building the release's environment (offline, from its own wheels)")
        env_facts, env_files, env_dirs = env_build.build(os.path.join(parent, stage, "tree"), target, env_doc, accepted.entries())
        checkpoint("deploy:environment")
    files = {m.rel for m in accepted.members if m.kind != "d" and m.rel} | {DEPLOY_MANIFEST} | env_files
    dirs = {m.rel for m in accepted.members if m.kind == "d" and m.rel} | env_dirs
    names = names_sha256(listing_of(files, dirs | _wanted_dirs(files)))  # of names only: the manifest may hold it
    lines = {str(k): str(v) for k, v in dict(req["manifest"]).items()}
    lines.update(
        {
            "pre_existed": "false",
            "files": str(facts["files"]),
            "tree_sha256": facts["tree_sha256"],
            "names_sha256": names,
            "target": target,
            "target_host": _hostname(),
            "rollback": rollback_command(target),
            **{k: str(v) for k, v in env_facts.items()},
        }
    )
    result: DeployResult = {"target": target, "files": int(facts["files"]), "tree_sha256": str(facts["tree_sha256"]), "manifest": lines}
    result["names_sha256"] = names
    if env_facts:
        result["env_sha256"] = str(env_facts["env_sha256"])
        result["env_packages"] = int(env_facts["env_packages"])
    return result


PARENT_MARKER = PREFIX + "parent"


def _only_parent_marker(parent: str) -> bool:
    try:
        return os.listdir(parent) == [PARENT_MARKER]
    except OSError:
        return False


def _remove_parent_if_ours(root_fd: int, parent_rel: str) -> bool:
    """Remove ``releases/`` if it holds nothing but the marker the deploy that made it wrote."""
    try:
        names = os.listdir(os.path.join(f"/proc/self/fd/{root_fd}", parent_rel))
    except OSError:
        return False
    if names not in ([], [PARENT_MARKER]):
        return False
    fd = open_dir(parent_rel, root_fd)
    try:
        if names:
            os.unlink(PARENT_MARKER, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(parent_rel, dir_fd=root_fd)
    return True


# ----------------------------------------------------------------------------- manifests


def parse_deploy_manifest(raw: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in raw.decode("utf-8", "replace").splitlines():
        if ": " in line:
            k, v = line.split(": ", 1)
            out[k] = v
    return out


def read_deploy_manifest(folder: str) -> dict[str, str]:
    fd = open_dir(folder)
    try:
        return parse_deploy_manifest(_read_regular(fd, DEPLOY_MANIFEST, 1 << 20))
    finally:
        os.close(fd)


def _manifest_of(folder_fd: int) -> tuple[dict[str, str], str] | None:
    try:
        raw = _read_regular(folder_fd, DEPLOY_MANIFEST, 1 << 20)
    except (OSError, AgentError):
        return None
    return parse_deploy_manifest(raw), hashlib.sha256(raw).hexdigest()


OWN_FILES = (DEPLOY_MANIFEST, BUNDLE_MANIFEST, ENV_MANIFEST)


def _wanted_dirs(paths: set[str] | dict[str, str]) -> set[str]:
    """Every folder above the given paths (a folder seen once has its parents in already)."""
    out: set[str] = set()
    for p in paths:
        i = p.rfind("/")
        while i > 0:
            folder = p[:i]
            if folder in out:
                break
            out.add(folder)
            i = p.rfind("/", 0, i)
    return out


def _release_entries(folder_fd: int) -> tuple[dict[str, str], dict[str, str], set[str]]:
    """(bundle entries, environment entries, environment folders) of a release."""
    env = env_build.read_env(folder_fd)
    return _bundle_entries(folder_fd), (env[0] if env else {}), (env[1] if env else set())


def _cache(path: str) -> bool:
    return "__pycache__" in path and "__pycache__" in path.split("/")


def names_sha256(listing: Listing) -> str:
    """sha256 of a release's entry names, folder by folder (bytecode caches aside): deploy
    records it from what it wrote, rollback compares it with ``list_tree``; equal means
    nothing was added (or removed) since, without reading the manifests."""
    lines = []
    for prefix in sorted(listing):
        if not _cache(prefix):
            names = sorted(("d:" if is_dir else "f:") + name for name, is_dir in listing[prefix] if name != "__pycache__")
            lines.append(prefix + "\0" + "\0".join(names))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def listing_of(files: Iterable[str], dirs: Iterable[str]) -> Listing:
    """The ``list_tree`` of a tree holding exactly these files (and links) and folders."""
    out: Listing = {"": []}
    for kind, paths in ((False, files), (True, dirs)):
        for path in paths:
            parent, _, name = path.rpartition("/")
            out.setdefault(f"{parent}/" if parent else "", []).append((name, kind))
            if kind:
                out.setdefault(f"{path}/", [])
    return out


def _listed_paths(listing: Listing) -> tuple[dict[str, str], set[str]]:
    found: dict[str, str] = {}
    dirs: set[str] = set()
    for prefix, entries in listing.items():
        for name, is_dir in entries:
            if is_dir:
                dirs.add(prefix + name)
            else:
                found[prefix + name] = "f"
    return found, dirs


def _added(found: dict[str, str], dirs: set[str], expected: set[str], env_dirs: set[str]) -> list[str]:
    """Paths of a walked release that its manifests do not list (bytecode caches aside)."""
    wanted_dirs = _wanted_dirs(expected) | set(env_dirs)
    added = [p for p in found if p not in expected and p not in OWN_FILES and not _cache(p)]
    added += [d + "/" for d in dirs if d not in wanted_dirs and not _cache(d)]
    return sorted(added)


def _bundle_entries(folder_fd: int) -> dict[str, str]:
    try:
        bm = jsonio.loads(_read_regular(folder_fd, BUNDLE_MANIFEST, MAX_MANIFEST))
        return manifest_entries(bm["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def op_rollback(req: RollbackRequest) -> RollbackResult:
    root = req["root"]
    target = req["target"]
    parent, name = os.path.split(target)
    deploy_id = checked_id(req["deploy_id"])
    if not os.path.isdir(root):
        raise AgentError(3, f"target root does not exist: {root}", "nothing to roll back", kind="absent")
    try:
        with Lock(root, deploy_id, "rollback", bool(req.get("break_lock"))):
            return _rollback_locked(req, root, parent, name, target, deploy_id)
    except OSError as exc:
        raise _io_error(exc, f"rollback of {target} failed") from None


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
        folder_fd = open_dir(name, parent_fd)
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
            listing: Listing = {}
            list_tree(folder_fd, "", listing)
            if req.get("names_sha256") and names_sha256(listing) == req.get("names_sha256"):
                added, added_check = [], "names"  # exactly the names the deploy wrote (the record says which)
            else:
                added_check = "manifest"
                found, dirs = _listed_paths(listing)
                entries, env_entries, env_dirs = _release_entries(folder_fd)
                trusted = req.get("tree_sha256") in (None, "") or tree_sha256(entries) == req.get("tree_sha256")
                trusted = trusted and (not env_entries or tree_sha256(env_entries) == manifest.get("env_sha256"))
                if trusted:
                    added = _added(found, dirs, set(entries) | set(env_entries), env_dirs)
                else:
                    added = ["(BUNDLE-MANIFEST.json or ENVIRONMENT-MANIFEST.json changed: the release's own file list cannot be trusted)"]
        finally:
            os.close(folder_fd)
        if added and not req.get("discard_added"):
            shown = ", ".join(added[:10]) + (f" and {len(added) - 10} more" if len(added) > 10 else "")
            raise refuse(
                f"refusing to remove {target}: it holds {len(added)} entries the deploy did not create: {shown}; nothing was removed",
                "move them out first, or rerun with --discard-added to delete them with the release",
            )
        known = read_promoted(root, deploy_id)  # the host's own record wins: the controller may never have seen the promote answer
        pointer = restore_pointer(root, target, known["previous"] if known else req.get("previous_current"))
        _forget_promoted(root, deploy_id)
        checkpoint("rollback:pointer")
        trash = make_marked_dir(parent_fd, "trash", deploy_id, "rollback")
        checkpoint("rollback:trash")
        os.rename(name, f"{trash}/release", src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
        os.fsync(parent_fd)
        checkpoint("rollback:renamed")
        trash_fd = open_dir(trash, parent_fd)
        try:
            if listing:  # the files as the check walked them, two threads; then the folders
                tree_fd = open_dir("release", trash_fd)
                try:
                    unlink_listed(tree_fd, listing)
                finally:
                    os.close(tree_fd)
            remove_tree_at(trash_fd, "release", listing=listing or None, files_done=bool(listing))
        finally:
            os.close(trash_fd)
        _remove_marked(parent_fd, trash)
        checkpoint("rollback:removed")
        return _rolled_back(req, root, parent, target, manifest, pointer=pointer, drift=drift, discarded=added, added_check=added_check)
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


def pointer_state(root: str) -> str:
    """What ``<root>/current`` is now, in words: 'none', or 'current -> <target>'."""
    current = os.path.join(root, "current")
    kind = path_kind(current)
    if kind == "absent":
        return "none"
    if kind != "symlink":
        return f"a {kind} (not managed by this tool)"
    link = os.readlink(current)
    return f"current -> {link}" + ("" if os.path.isdir(current) else " (dangling)")


def _is_release(path: str) -> bool:
    return path_kind(path) == "directory" and path_kind(os.path.join(path, DEPLOY_MANIFEST)) == "file"


def _release_under(root: str, rel: str | None) -> bool:
    """Whether ``rel`` (a pointer's text: from the controller's record, or from the host's own
    ``.release-promoted-<id>``) names a release inside ``root``: relative by the name rule (no
    '..', not absolute), resolving inside the root, holding a DEPLOY-MANIFEST. A pointer is
    never aimed anywhere else, whoever wrote the text."""
    if not rel or name_problem(rel):
        return False
    path = os.path.join(root, rel)
    real_root = os.path.realpath(root)
    return os.path.realpath(path).startswith(real_root.rstrip("/") + "/") and _is_release(path)


def restore_pointer(root: str, target: str, previous: str | None) -> str:
    """If ``current`` points at the release being removed, point it at ``previous`` if that
    release still exists, else remove it: ``current`` never points at a missing release."""
    current = os.path.join(root, "current")
    if path_kind(current) != "symlink":
        return "untouched"
    if os.path.realpath(current) != os.path.realpath(target):
        return "untouched"
    if previous and _release_under(root, previous) and os.path.realpath(os.path.join(root, previous)) != os.path.realpath(target):
        switch_link(root, previous)
        return f"restored to {previous}"
    os.unlink(current)
    fsync_dir(root)
    if previous:
        return f"removed (the previous release {previous} no longer exists)"
    return "removed (no previous release)"


def switch_link(root: str, rel_target: str) -> str | None:
    """Atomically point ``<root>/current`` at ``rel_target``; return the previous target."""
    current = os.path.join(root, "current")
    kind = path_kind(current)
    if kind not in ("absent", "symlink"):
        raise refuse(f"{current} exists and is a {kind}, not a pointer this tool manages", "move it away by hand")
    previous = os.readlink(current) if kind == "symlink" else None
    tmp = os.path.join(root, f"{PREFIX}current-{os.urandom(6).hex()}-{os.getpid()}")
    os.symlink(rel_target, tmp)
    checkpoint("promote:link-made")
    os.replace(tmp, current)
    fsync_dir(root)
    return previous


PROMOTED = PREFIX + "promoted-"  # <root>/.release-promoted-<deploy id>: the pointer before that deploy's promotion


def read_promoted(root: str, deploy_id: str) -> dict[str, Any] | None:
    """What the host itself recorded before it switched ``current`` to ``deploy_id``'s release:
    {"previous": link text or None}; None when it never did."""
    try:
        fd = open_dir(root)
    except OSError:
        return None
    try:
        data = jsonio.loads(_read_regular(fd, PROMOTED + checked_id(deploy_id), 1 << 16))
    except (OSError, ValueError, AgentError):
        return None
    finally:
        os.close(fd)
    if not isinstance(data, dict) or not isinstance(data.get("release"), str) or not isinstance(data.get("previous"), (str, type(None))):
        return None  # not a record this tool wrote: the controller's own record decides
    return data


def _forget_promoted(root: str, deploy_id: str) -> None:
    try:
        os.unlink(os.path.join(root, PROMOTED + checked_id(deploy_id)))
    except FileNotFoundError:
        pass


def op_promote(req: PromoteRequest) -> PromoteResult:
    """Point ``current`` at the release. The pointer it replaces is written on the host first
    (``.release-promoted-<id>``), so a rollback or a fleet revert restores it even when the
    controller never saw this answer. Promoting the release ``current`` already points at
    changes nothing and keeps the recorded previous."""
    root = req["root"]
    target = req["target"]
    deploy_id = checked_id(req["deploy_id"])
    try:
        with Lock(root, deploy_id, "promote", bool(req.get("break_lock"))):
            clean_leftovers(root)
            if not _is_release(target):
                raise AgentError(3, f"no release at {target} to promote", "deploy it first; a rolled-back release cannot be promoted")
            manifest = read_deploy_manifest(target)
            if manifest.get("deploy_id") != req["deploy_id"]:
                raise refuse(f"{target} belongs to deploy {manifest.get('deploy_id')!r}, not {req['deploy_id']!r}")
            rel = os.path.relpath(target, root)
            current = os.path.join(root, "current")
            if path_kind(current) == "symlink" and os.path.realpath(current) == os.path.realpath(target):
                known = read_promoted(root, deploy_id)
                return {"current": rel, "previous": known["previous"] if known else None, "unchanged": True}
            kind = path_kind(current)
            previous = os.readlink(current) if kind == "symlink" else None
            _forget_promoted(root, deploy_id)  # an earlier promotion of it, since switched away from
            root_fd = open_dir(root)
            try:
                _write_new(root_fd, PROMOTED + deploy_id, jsonio.dumps({"deploy_id": deploy_id, "release": rel, "previous": previous}).encode(), 0o644)
                os.fsync(root_fd)
            finally:
                os.close(root_fd)
            checkpoint("promote:previous-recorded")
            previous = switch_link(root, rel)
            return {"current": rel, "previous": previous, "unchanged": False}
    except OSError as exc:
        raise _io_error(exc, f"promote of {target} failed") from None


def op_repoint(req: RepointRequest) -> RepointResult:
    """Point ``current`` back at ``to`` (a release relative to the root), or remove it (None):
    the undo of a promotion in a wave that failed. With ``from_host`` (the controller never
    saw this host's promote answer) the host's own record decides: if it switched ``current``
    to this deploy's release, the pointer goes back to what it recorded before; otherwise
    nothing changes."""
    root = req["root"]
    deploy_id = checked_id(req["deploy_id"])
    with Lock(root, deploy_id, "repoint", bool(req.get("break_lock"))):
        to = req.get("to")
        if req.get("from_host"):
            known = read_promoted(root, deploy_id)
            current = os.path.join(root, "current")
            ours = known is not None and path_kind(current) == "symlink" and os.readlink(current) == known.get("release")
            if not ours:
                return {"current": pointer_state(root), "unchanged": True}
            to = known["previous"] if known else None
        _forget_promoted(root, deploy_id)
        checkpoint("repoint:switching")
        if to and _release_under(root, to):
            switch_link(root, to)
        elif path_kind(os.path.join(root, "current")) == "symlink":
            os.unlink(os.path.join(root, "current"))
            fsync_dir(root)
        return {"current": pointer_state(root)}


def op_tidy(req: TidyRequest) -> TidyResult:
    """Under the lock, remove what killed runs left in the root and in the releases folder."""
    root = req["root"]
    with Lock(root, checked_id(req["deploy_id"]), "tidy", bool(req.get("break_lock"))):
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


def op_status(req: StatusRequest) -> dict[str, Any]:
    root = req["root"]
    releases = []
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
                }
            )
    others = sorted(n for n in os.listdir(root) if not n.startswith(PREFIX)) if os.path.isdir(root) else []
    return {"root": root, "releases": releases, "lock": read_lock(root), "entries": others, "leftovers": left, "current": pointer_state(root)}


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
        want = {**bundle_want, **env_want}
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
