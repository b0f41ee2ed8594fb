"""A release's own files on the target: its DEPLOY-MANIFEST, the listing of what it holds,
what was added after the deploy, and the folders a deploy made around it (the releases
folder, and the root with the folders above it that ``create_root`` made)."""

from __future__ import annotations

import hashlib
import os

from . import jsonio
from .fsutil import _read_regular, _write_new, open_dir
from .journal import JOURNAL
from .names import manifest_entries, utf8
from .protocol import BUNDLE_MANIFEST, DEPLOY_MANIFEST, ENV_MANIFEST, LOCK, PREFIX, AgentError

TYPE_CHECKING = False  # typing and the message shapes are for the type checker: not imported on the target
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from .fsutil import Listing


PARENT_MARKER = PREFIX + "parent"
ROOT_MARKER = PREFIX + "root"  # <root>/.release-root: the folders create_root made (the root last)
MAX_ROOT_MARKER = 64 << 10


def make_root(root: str, deploy_id: str) -> list[str]:
    """Create ``root`` and the folders above it that are missing (``target.create_root``),
    recording them in the root's marker; the folders made, top down."""
    missing: list[str] = []
    path = os.path.abspath(root)
    while not os.path.isdir(path):
        missing.append(path)
        up = os.path.dirname(path)
        if up == path:
            break
        path = up
    created: list[str] = []
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o755)
        except FileExistsError:
            if not os.path.isdir(folder):
                raise
            continue  # made meanwhile by someone else: not ours
        created.append(folder)
    if created and created[-1] == os.path.abspath(root):
        fd = open_dir(root)
        try:
            _write_new(fd, ROOT_MARKER, jsonio.dumps({"deploy_id": deploy_id, "created": created}).encode(), 0o644)
        finally:
            os.close(fd)
    return created


def root_created(root: str) -> list[str]:
    """The folders create_root made for ``root`` (its marker), or [] when the root was not
    made by this tool; a marker of any other shape, or naming a folder that is not the root
    or above it, is no marker."""
    try:
        fd = open_dir(root)
    except OSError:
        return []
    try:
        doc = jsonio.loads_bounded(_read_regular(fd, ROOT_MARKER, MAX_ROOT_MARKER), MAX_ROOT_MARKER)
    except (OSError, ValueError, AgentError):
        return []
    finally:
        os.close(fd)
    created = doc.get("created") if isinstance(doc, dict) else None
    me = os.path.abspath(root)
    if not isinstance(created, list) or not created or created[-1] != me:
        return []
    if not all(isinstance(p, str) and (p == me or me.startswith(p.rstrip("/") + "/")) for p in created):
        return []
    return [str(p) for p in created]


def remove_root_if_ours(root: str, release_lock: Callable[[], None]) -> list[str]:
    """Remove the root and the folders above it that create_root made, when the root holds
    nothing but its marker and the lock (``release_lock`` drops the lock just before the root
    goes); each folder only while it is empty. The folders removed, deepest first."""
    created = root_created(root)
    if not created:
        return []
    try:
        if set(os.listdir(root)) - {ROOT_MARKER, LOCK, JOURNAL}:
            return []
    except OSError:
        return []
    os.unlink(os.path.join(root, ROOT_MARKER))
    try:
        os.unlink(os.path.join(root, JOURNAL))  # the journal of a root this tool made and now removes
    except FileNotFoundError:
        pass
    release_lock()
    removed: list[str] = []
    for folder in reversed(created):
        try:
            os.rmdir(folder)
        except OSError:
            break  # something else is in it now: it stays, with everything above it
        removed.append(folder)
    return removed


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
    from . import env_build  # the environment's reader: only for a release whose names changed

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
    return hashlib.sha256(utf8("\n".join(lines))).hexdigest()


def listing_of(files: Iterable[str], dirs: Iterable[str]) -> Listing:
    """The ``list_tree`` of a tree holding exactly these files (and links) and folders."""
    out: Listing = {"": []}
    for kind, paths in ((False, files), (True, dirs)):
        for path in paths:
            parent, _sep, name = path.rpartition("/")
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
        from .tarsafe import MAX_MANIFEST

        bm = jsonio.loads(_read_regular(folder_fd, BUNDLE_MANIFEST, MAX_MANIFEST))
        return manifest_entries(bm["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}
