"""Shared paths: what lives across releases (``target.shared`` folders, ``target.shared_files``).

They are kept under ``<root>/shared/`` and linked into each release while it is staged,
before the rename, so a release appears whole. Folders are created empty when missing;
files never are: a missing shared file is exit 3 naming it, so a release never starts
without its ``.env``. Everything is walked through folder descriptors, component by
component, never through a link; a shared path the release also ships is refused (exit 4).
Rollback removes a release's links (never following them) and never anything under
``shared/``; ``verify`` and ``tree-unchanged`` compare the links with the DEPLOY-MANIFEST's
``shared_links`` without following them.
"""

from __future__ import annotations

import os

from . import jsonio
from .fsutil import _lstat_kind, open_dir
from .names import name_problem
from .protocol import AgentError, refuse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SHARED = "shared"
MANIFEST_KEY = "shared_links"
MAX_SHARED = 256  # shared paths of a config
MAX_MANIFEST_VALUE = 1 << 20


def _checked(rel: str, key: str) -> list[str]:
    why = name_problem(rel) if rel and not rel.startswith("/") else "not a relative path"
    if why or ".." in rel.split("/"):
        raise refuse(f"{key}: {rel!r} cannot be a shared path ({why or 'it leaves the root'})", f"fix {key}: a path relative to the release")
    return rel.split("/")


def _walk(top_fd: int, parts: list[str], create: bool, shown: str) -> int:
    """The folder ``parts`` below ``top_fd``, opened component by component without
    following a link (made when ``create``); -1 when a component is missing."""
    fd = os.dup(top_fd)
    try:
        for part in parts:
            kind = _lstat_kind(part, fd)
            if kind == "absent":
                if not create:
                    os.close(fd)
                    return -1
                os.mkdir(part, 0o755, dir_fd=fd)
            elif kind != "directory":
                raise refuse(f"{shown} passes through {part}, a {kind}: a shared path is never reached through it", f"move {shown} away by hand")
            nfd = open_dir(part, fd)
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def prepare(req: dict[str, Any], root: str, root_fd: int) -> dict[str, str]:
    """Before anything else of the deploy: every shared file exists (exit 3 naming the one
    that does not), every shared folder exists (made when missing). The links to make:
    path in the release -> its place under ``<root>/shared/``."""
    folders = list(req.get("shared") or [])
    files = list(req.get("shared_files") or [])
    if not (folders or files):
        return {}
    if len(folders) + len(files) > MAX_SHARED:
        raise refuse(f"more than {MAX_SHARED} shared paths", "share a folder that holds them")
    base = os.path.join(root, SHARED)
    checked = {rel: _checked(rel, "target.shared") for rel in folders}
    checked_files = {rel: _checked(rel, "target.shared_files") for rel in files}
    found_fd = _walk(root_fd, [SHARED], False, base)  # read only: nothing is made before every file is found
    try:
        for rel, parts in checked_files.items():
            shown = os.path.join(base, rel)
            pfd = _walk(found_fd, parts[:-1], False, shown) if found_fd >= 0 else -1
            kind = "absent" if pfd < 0 else _lstat_kind(parts[-1], pfd)
            if pfd >= 0:
                os.close(pfd)
            if kind != "file":
                raise AgentError(
                    3,
                    f"shared file {shown} is {'missing' if kind == 'absent' else 'a ' + kind + ', not a file'}: a release never starts without it",
                    f"create {shown} on the target (this tool never creates a shared file)",
                )
    finally:
        if found_fd >= 0:
            os.close(found_fd)
    shared_fd = _walk(root_fd, [SHARED], True, base)
    try:
        for rel, parts in checked.items():
            os.close(_walk(shared_fd, parts, True, os.path.join(base, rel)))
    finally:
        os.close(shared_fd)
    return {rel: os.path.join(base, rel) for rel in [*folders, *files]}


def link(tree_fd: int, links: dict[str, str], tree_shown: str) -> None:
    """Link each shared path into the staged release; a path the release ships is refused."""
    for rel, target in links.items():
        parts = rel.split("/")
        pfd = _walk(tree_fd, parts[:-1], True, os.path.join(tree_shown, rel))
        try:
            kind = _lstat_kind(parts[-1], pfd)
            if kind != "absent":
                raise refuse(
                    f"the release ships {rel} ({kind}), which target.shared / target.shared_files names: it would hide the shared one",
                    f"remove {rel} from the application's repository (or exclude it with bundle.exclude), or stop sharing it",
                )
            os.symlink(target, parts[-1], dir_fd=pfd)
        finally:
            os.close(pfd)


def manifest_value(links: dict[str, str]) -> str:
    return jsonio.dumps(dict(sorted(links.items())))


def from_manifest(manifest: dict[str, str]) -> dict[str, str]:
    """The shared links a DEPLOY-MANIFEST lists (none when it lists none, or not readably)."""
    raw = manifest.get(MANIFEST_KEY, "")
    if not raw:
        return {}
    try:
        doc = jsonio.loads_bounded(raw, MAX_MANIFEST_VALUE)
    except ValueError:
        return {}
    if not isinstance(doc, dict):
        return {}
    return {str(k): str(v) for k, v in doc.items() if isinstance(k, str) and isinstance(v, str)}
