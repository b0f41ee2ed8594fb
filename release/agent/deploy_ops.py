"""Ops that put a release on the target: facts (what the target has), deploy (verify, scan, stage, manifest, rename)."""

from __future__ import annotations

import hashlib
import os
import stat
import sys

from . import env_build, journal, jsonio, shared_paths
from .fsutil import (
    _lstat_kind,
    _read_regular,
    _write_new,
    listing_sha256,
    open_dir,
    path_kind,
    rename_noreplace,
    sync_filesystem,
)
from .leftovers import _remove_marked, clean_leftovers, make_marked_dir
from .lock import Lock, lock_wait, read_lock
from .names import checked_folder_name, checked_id, manifest_text, rollback_command
from .protocol import BUNDLE_MANIFEST, DEPLOY_MANIFEST, PREFIX, AgentError, _hostname, _io_error, checkpoint, refuse, say
from .release_tree import (
    PARENT_MARKER,
    _only_parent_marker,
    _remove_parent_if_ours,
    _wanted_dirs,
    listing_of,
    make_root,
    names_sha256,
    read_deploy_manifest,
    remove_root_if_ours,
)
from .tarsafe import MAX_MANIFEST, Verified, finish, scan

TYPE_CHECKING = False  # typing and the message shapes are for the type checker: not imported on the target
if TYPE_CHECKING:
    from typing import Any

    from .messages import (
        DeployRequest,
        DeployResult,
        FactsRequest,
        FactsResult,
    )


def op_facts(req: FactsRequest) -> FactsResult:
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
        candidates = [p for _stamp, p in sorted(found, reverse=True)[:1]]
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
    created: list[str] = []
    # the host's own signers decide, before anything is written (the root included)
    trusted = None
    if req.get("trust") and not req.get("ship_only"):
        from . import trust

        trusted = trust.check_before(dict(req))
    if not os.path.isdir(root):
        if req.get("create_root"):
            try:
                created = make_root(root, deploy_id)
            except OSError as exc:
                raise _io_error(exc, f"cannot create target root {root}") from None
        else:
            raise AgentError(3, f"target root does not exist: {root}", "create it, or set target.create_root = true")
    try:
        with Lock(root, deploy_id, "deploy", bool(req.get("break_lock")), lock_wait(req)) as lock:
            root_fd = open_dir(root)
            try:
                result = _deploy_locked(req, root, root_fd, parent_rel, dirname, deploy_id, trusted)
            except BaseException:
                if created:  # a failed deploy takes back the root it made
                    os.close(root_fd)
                    root_fd = -1
                    remove_root_if_ours(root, lock.release)
                raise
            finally:
                if root_fd >= 0:
                    os.close(root_fd)
            result["root_created"] = created
            if not result.get("shipped"):
                journal.append(root, "deployed", deploy_id, req, target=result["target"], version=str(req["expect"].get("version", "")))
            return result
    except OSError as exc:
        raise _io_error(exc, f"deploy to {os.path.join(root, parent_rel, dirname)} failed") from None


def _deploy_locked(
    req: DeployRequest, root: str, root_fd: int, parent_rel: str, dirname: str, deploy_id: str, trusted: dict[str, Any] | None = None
) -> DeployResult:
    parent = os.path.join(root, parent_rel) if parent_rel else root
    shared = shared_paths.prepare(dict(req), root, root_fd)  # a missing shared file stops the deploy before anything is written
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
            result = _unpack(req, parent, parent_fd, stage, dirname, target, deploy_id, shared, trusted)
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


def _unpack(
    req: DeployRequest,
    parent: str,
    parent_fd: int,
    stage: str,
    dirname: str,
    target: str,
    deploy_id: str,
    shared: dict[str, str] | None = None,
    trusted: dict[str, Any] | None = None,
) -> DeployResult:
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
            return {"shipped": True, "bundle_sha256": sha}  # type: ignore[typeddict-item]  # a ShippedResult: the client checks it as one
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
            if trusted is not None:  # still in the private staging folder: a refusal leaves the root as it was
                from . import trust

                trust.check_contents(trusted, {m.rel: m.sha256 for m in accepted.members if m.kind == "f"}, tree_fd)
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
    if shared:  # the shared paths, linked in while the release is staged: it appears whole
        stage_fd = open_dir(stage, parent_fd)
        try:
            tree_fd = open_dir("tree", stage_fd)
            try:
                shared_paths.link(tree_fd, shared, target)
            finally:
                os.close(tree_fd)
        finally:
            os.close(stage_fd)
    files = {m.rel for m in accepted.members if m.kind != "d" and m.rel} | {DEPLOY_MANIFEST} | env_files | set(shared or {})
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
            **({shared_paths.MANIFEST_KEY: shared_paths.manifest_value(shared)} if shared else {}),
            **({"signed_by": str(trusted["signed_by"]), "trusted_by": str(dict(req["trust"])["signers"])} if trusted is not None else {}),
        }
    )
    result: DeployResult = {"target": target, "files": int(facts["files"]), "tree_sha256": str(facts["tree_sha256"]), "manifest": lines}
    result["names_sha256"] = names
    if env_facts:
        result["env_sha256"] = str(env_facts["env_sha256"])
        result["env_packages"] = int(env_facts["env_packages"])
    return result
