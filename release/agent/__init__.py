"""Target-side agent: everything that happens on the target, standard library only.

The controller runs it with the target's interpreter (``target.python``): for a local
target as a child process, for an SSH target sent over the connection inside the
command (as Ansible sends its modules): ``release.remote.transport`` packs these modules'
sources into one program with a small ``sys.meta_path`` importer, run under
``python -I -S``, leaving nothing on the target. Local and SSH behave the same by
construction. Protocol: ``<op> <request-json>``; the bundle, when there is one, arrives
on stdin; the answer is one JSON line on stdout; the exit code follows the contract
(0 ok, 1 failed, 2 usage, 3 blocked, 4 refused).

Modules, by concern (each imports only the standard library and its siblings; an AST
test enforces it):

    protocol       constants, AgentError (an exit code), progress, test hooks
    names          name rules, link rule, deploy ids, manifest format, tree hash
    fsutil         descriptor-relative filesystem helpers, rename_noreplace, listing hash
    parallel_tree  a tree listed, checked, then removed by two processes at once
    lock           the root's lock
    leftovers      staging/trash folders of killed runs: marked, cleaned
    tarsafe        the bundle reader: checksum first, then one pass that checks and writes
    release_tree   a release's own files: DEPLOY-MANIFEST, listings, what was added, the parent it made
    deploy_ops     facts, deploy
    rollback_ops   rollback (exact, with the parent proof)
    pointer_ops    promote, repoint: the `current` pointer and what it may point to
    status_ops     status, verify, inspect, tidy
    smoke_ops      G5 checks, bounded, clean environment
    provision_ops  G4 runtime skeleton and its exact undo
    ops            the op registry and ``main``

The controller imports the shared rules from here: one copy of every rule.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported on the target
if TYPE_CHECKING:  # the same names, statically, for mypy
    from typing import Any

    from .fsutil import listing_sha256, open_dir, path_kind, rename_noreplace
    from .lock import Lock, read_lock
    from .names import checked_folder_name, checked_id, link_problem, manifest_entries, manifest_text, name_problem, rollback_command, tree_sha256
    from .ops import OPS, main
    from .protocol import BUNDLE_MANIFEST, DEPLOY_MANIFEST, DEPLOY_WRITES, LOCK, MARKER, PREFIX, AgentError, refuse
    from .tarsafe import MAX_HEADER_BODY, MAX_MANIFEST, Scan, Verified, finish, scan

# the controller's names, imported from their modules on first use (PEP 562): the agent on
# a target imports only the modules its op needs
_EXPORTS = {
    "fsutil": ("listing_sha256", "open_dir", "path_kind", "rename_noreplace"),
    "lock": ("Lock", "read_lock"),
    "names": ("checked_folder_name", "checked_id", "link_problem", "manifest_entries", "manifest_text", "name_problem", "rollback_command", "tree_sha256"),
    "ops": ("OPS", "main"),
    "protocol": ("BUNDLE_MANIFEST", "DEPLOY_MANIFEST", "DEPLOY_WRITES", "LOCK", "MARKER", "PREFIX", "AgentError", "refuse"),
    "tarsafe": ("MAX_HEADER_BODY", "MAX_MANIFEST", "Scan", "Verified", "finish", "scan"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(__import__(f"{__name__}.{module}", fromlist=[name]), name)  # no importlib on the target


__all__ = [
    "BUNDLE_MANIFEST",
    "DEPLOY_MANIFEST",
    "DEPLOY_WRITES",
    "LOCK",
    "MARKER",
    "MAX_HEADER_BODY",
    "MAX_MANIFEST",
    "OPS",
    "PREFIX",
    "AgentError",
    "Lock",
    "Scan",
    "Verified",
    "checked_folder_name",
    "checked_id",
    "finish",
    "link_problem",
    "listing_sha256",
    "main",
    "manifest_entries",
    "manifest_text",
    "name_problem",
    "open_dir",
    "path_kind",
    "read_lock",
    "refuse",
    "rename_noreplace",
    "rollback_command",
    "scan",
    "tree_sha256",
]
