"""Retention: which releases ``prune --keep N`` removes, decided from the host's own facts.

A pure function of what the target's ``status`` says (its releases, the order its journal
deployed them in, each one's last smoke and health verdicts, ``current`` and the previous
release as the journal says) and of ``keep``. It keeps the ``keep`` newest good releases
(last smoke passed, health not failed since), and removes only releases older than the
oldest of those, never the current, never the previous, never the newest one whose smoke
or health checks failed (kept for diagnosis), never
a release this tool did not deploy (no manifest of ours: ``status`` does not list it),
never one deployed after the kept ones (a release still being smoked is newer). Without
``keep`` passing releases nothing is removed: a host that never passed a smoke keeps all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

PASSED = "smoke passed"
FAILED = "smoke failed"
UNHEALTHY = "health failed"


def good(release: Mapping[str, Any]) -> bool:
    """Its last smoke passed, and it did not fail its health checks after a restart since."""
    return release.get("smoke") == PASSED and release.get("health") != UNHEALTHY


def bad(release: Mapping[str, Any]) -> bool:
    return release.get("smoke") == FAILED or release.get("health") == UNHEALTHY


@dataclass(frozen=True)
class Decision:
    remove: tuple[str, ...]  # deploy ids, oldest first
    keep: dict[str, str] = field(default_factory=dict)  # deploy id -> why it stays


def decide(releases: Sequence[Mapping[str, Any]], keep: int, current: str | None, previous: str | None) -> Decision:
    """``releases``: each with ``deploy_id``, ``path`` (relative to the root or absolute),
    ``order`` (its position in the journal's deploys; None when the journal has none),
    ``smoke`` (its last smoke verdict, '' when none)."""
    if keep < 1:
        raise ValueError("keep must be at least 1")
    ordered = sorted(releases, key=lambda r: (r.get("order") is None, r.get("order") or 0))
    why: dict[str, str] = {}
    for r in ordered:
        if r.get("order") is None:
            why[r["deploy_id"]] = "not in this host's journal: its age is unknown"
    passing = [r for r in ordered if good(r) and r["deploy_id"] not in why]
    kept_good = passing[-keep:]
    for r in kept_good:
        why[r["deploy_id"]] = f"one of the {keep} newest that passed smoke"
    failed = [r for r in ordered if bad(r)]
    if failed:
        why.setdefault(failed[-1]["deploy_id"], "the newest that failed its smoke or health checks (kept for diagnosis)")
    for r in ordered:
        if _is(r, current):
            why[r["deploy_id"]] = "current"
        elif _is(r, previous):
            why.setdefault(r["deploy_id"], "previous")
    if len(passing) < keep or not kept_good:
        for r in ordered:
            why.setdefault(r["deploy_id"], f"fewer than {keep} releases passed smoke here: nothing is pruned")
        return Decision((), why)
    oldest_kept = kept_good[0].get("order") or 0
    remove = []
    for r in ordered:
        if r["deploy_id"] in why:
            continue
        if (r.get("order") or 0) > oldest_kept:
            why[r["deploy_id"]] = "newer than the releases kept"
            continue
        remove.append(r["deploy_id"])
    return Decision(tuple(remove), why)


def _is(release: Mapping[str, Any], pointer: str | None) -> bool:
    if not pointer:
        return False
    path = str(release.get("path", ""))
    return path == pointer or path.endswith("/" + pointer) or path.rsplit("/", 1)[-1] == pointer.rsplit("/", 1)[-1]
