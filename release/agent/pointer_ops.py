"""The ``current`` pointer of the timestamped strategy: promote (switch it, recording the replaced
pointer on the host first), repoint (switch it back), and the rule of what it may point to."""

from __future__ import annotations

import os

from . import journal, jsonio
from .fsutil import (
    _read_regular,
    _write_new,
    fsync_dir,
    open_dir,
    path_kind,
)
from .leftovers import clean_leftovers
from .lock import Lock, lock_wait
from .names import checked_id, name_problem
from .protocol import DEPLOY_MANIFEST, PREFIX, AgentError, _io_error, checkpoint, refuse
from .release_tree import read_deploy_manifest

TYPE_CHECKING = False  # typing and the message shapes are for the type checker: not imported on the target
if TYPE_CHECKING:
    from typing import Any

    from .messages import (
        PromoteRequest,
        PromoteResult,
        RepointRequest,
        RepointResult,
    )


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


def restore_pointer(root: str, target: str, previous: str | None) -> tuple[str, str | None]:
    """If ``current`` points at the release being removed, point it at ``previous`` if that
    release still exists, else remove it: ``current`` never points at a missing release.
    Returns what was done, in words, and the release ``current`` was pointed back at (None
    when it was left alone or removed)."""
    current = os.path.join(root, "current")
    if path_kind(current) != "symlink":
        return "untouched", None
    if os.path.realpath(current) != os.path.realpath(target):
        return "untouched", None
    if previous and _release_under(root, previous) and os.path.realpath(os.path.join(root, previous)) != os.path.realpath(target):
        switch_link(root, previous)
        return f"restored to {previous}", previous
    os.unlink(current)
    fsync_dir(root)
    if previous:
        return f"removed (the previous release {previous} no longer exists)", None
    return "removed (no previous release)", None


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
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("release"), str)
        or not isinstance(data.get("previous"), (str, type(None)))
        or not isinstance(data.get("prior_previous"), (str, type(None)))
    ):
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
        with Lock(root, deploy_id, "promote", bool(req.get("break_lock")), lock_wait(req)):
            clean_leftovers(root)
            if not _is_release(target):
                raise AgentError(3, f"no release at {target} to promote", "deploy it first; a rolled-back release cannot be promoted")
            manifest = read_deploy_manifest(target)
            if manifest.get("deploy_id") != req["deploy_id"]:
                raise refuse(f"{target} belongs to deploy {manifest.get('deploy_id')!r}, not {req['deploy_id']!r}")
            entries = journal.read(root)[0]
            smoked = journal.last_smoke(entries, deploy_id)
            if smoked != "smoke passed" and not req.get("force"):
                said = "its last smoke on this host failed" if smoked else "it was never smoked on this host"
                raise refuse(
                    f"promotion of {deploy_id} refused: {said} (the host's journal decides)",
                    "run `release smoke` and promote once it passes, or `release promote --force` (journalled)",
                )
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
                prior = journal.previous_current(entries)  # the journal's previous before this promotion: an undo restores it
                record = {"deploy_id": deploy_id, "release": rel, "previous": previous, "prior_previous": prior}
                _write_new(root_fd, PROMOTED + deploy_id, jsonio.dumps(record).encode(), 0o644)
                os.fsync(root_fd)
            finally:
                os.close(root_fd)
            checkpoint("promote:previous-recorded")
            previous = switch_link(root, rel)
            forced = {"forced": True, "smoke": smoked or "none"} if smoked != "smoke passed" else {}
            journal.append(root, "promoted", deploy_id, req, current=rel, previous=previous, **forced)
            result: PromoteResult = {"current": rel, "previous": previous, "unchanged": False}
            spec = req.get("service")
            if spec and (spec.get("restart") or spec.get("checks")):
                from . import service_ops

                up = service_ops.bring_up(root, rel, spec, req, deploy_id)
                result["service"] = up
                if not up["ok"]:
                    why = "restart failed" if up["restart"] and up["restart"]["status"] != "ok" else "health failed"
                    back = _undo(root, deploy_id, previous, prior, req, why)
                    again = service_ops.bring_up(root, back, spec, req, deploy_id, "revert") if back else None
                    result["current"] = back
                    result["reverted"] = True
                    result["revert_service"] = again
            return result
    except OSError as exc:
        raise _io_error(exc, f"promote of {target} failed") from None


def _undo(root: str, deploy_id: str, to: str | None, prior: str | None, req: Any, why: str) -> str | None:
    """``current`` back at ``to`` (if that release is still there; else no pointer), the
    promotion's record forgotten, journalled as reverted with the journal's previous as it
    was before the promotion. Returns where ``current`` points now."""
    _forget_promoted(root, deploy_id)
    checkpoint("repoint:switching")
    back = to if to and _release_under(root, to) else None
    current = os.path.join(root, "current")
    replaced = os.readlink(current) if path_kind(current) == "symlink" else None
    if back:
        switch_link(root, back)
    elif replaced is not None:
        os.unlink(current)
        fsync_dir(root)
    journal.append(root, "reverted", deploy_id, req, current=back, previous=prior, replaced=replaced, reason=why)
    return back


def op_repoint(req: RepointRequest) -> RepointResult:
    """Point ``current`` back at ``to`` (a release relative to the root), or remove it (None):
    the undo of a promotion in a wave that failed. With ``from_host`` (the controller never
    saw this host's promote answer) the host's own record decides: if it switched ``current``
    to this deploy's release, the pointer goes back to what it recorded before; otherwise
    nothing changes."""
    root = req["root"]
    deploy_id = checked_id(req["deploy_id"])
    with Lock(root, deploy_id, "repoint", bool(req.get("break_lock")), lock_wait(req)):
        to = req.get("to")
        known = read_promoted(root, deploy_id)
        current = os.path.join(root, "current")
        if req.get("from_host"):
            ours = known is not None and path_kind(current) == "symlink" and os.readlink(current) == known.get("release")
            if not ours:
                return {"current": pointer_state(root), "unchanged": True}
            to = known["previous"] if known else None
        undo = bool(req.get("undo") or req.get("from_host"))
        if not undo and not (to and _release_under(root, to)):
            # a step back goes to a release of this root or nowhere: `current` stays as it is
            raise refuse(f"{to!r} is not a release under {root}: `current` was left as it is", "`release status` lists the releases")
        replaced = os.readlink(current) if path_kind(current) == "symlink" else None
        # an undo restores the journal's previous of before the promotion; a step back
        # (--to-previous) makes the release it leaves the previous one
        prior = known.get("prior_previous") if undo and known else (None if undo else replaced)
        back = _undo(root, deploy_id, to, prior, req, "undo of the promotion" if undo else "rollback --to-previous")
        out: RepointResult = {"current": pointer_state(root)}
        spec = req.get("service")
        if back and spec and (spec.get("restart") or spec.get("checks")):
            from . import service_ops

            out["service"] = service_ops.bring_up(root, back, spec, req, deploy_id, "revert")
        return out
