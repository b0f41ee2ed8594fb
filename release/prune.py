"""Stage ``prune``: remove old releases, never a good one (``release prune --keep N``).

The target's own facts decide (its ``status``: the releases with the order its journal
deployed them in and each one's last smoke, ``current`` and the previous release as the
journal says); ``retention.decide`` is the rule. Each removal is a rollback of that
deploy (the same exact checks: its DEPLOY-MANIFEST names it, nothing was added to it),
journalled on the host as ``pruned``; a release this controller has no record of is left
alone and named. ``--dry-run`` lists what would go and why each other release stays.
``target.keep`` applies the same after every successful promote.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import reconcile, retention
from . import rollback as rollback_stage
from .config import Config
from .errors import ConfigError, InUseError, ReleaseError
from .remote.client import Agent
from .remote.transport import for_config
from .stage import Options, StageResult
from .state import State


def current_of(status: Mapping[str, Any]) -> str | None:
    """The release ``current`` points at, from a status answer (None: no pointer)."""
    said = str(status.get("current") or "")
    return said.split(" -> ", 1)[1].split(" (", 1)[0] if said.startswith("current -> ") else None


NEW = "<the new release>"


def after_promote(cfg: Config, status: Mapping[str, Any]) -> list[str]:
    """What ``target.keep`` would remove after the next deploy is smoked and promoted, as the
    host is now: the new release counted as the newest that passed smoke, the release current
    now as the previous. The paths, oldest first."""
    orders = [r["order"] for r in status["releases"] if r.get("order") is not None]
    new = {"deploy_id": NEW, "path": NEW, "order": max(orders, default=-1) + 1, "smoke": retention.PASSED}
    decision = retention.decide([*status["releases"], new], cfg.keep, NEW, current_of(status))
    paths = {r["deploy_id"]: r["path"] for r in status["releases"]}
    return [paths[d] for d in decision.remove]


def run(cfg: Config, keep: int, dry_run: bool) -> StageResult:
    if keep < 1:
        raise ConfigError(f"prune --keep must be at least 1, got {keep}", hint="keep at least the current release: --keep 1 or more")
    state = State(cfg.state)
    transport = for_config(cfg)
    if not dry_run:
        reconcile.settle(cfg, state, transport, running_ok=False)
    st = Agent(transport).status({"root": cfg.root})
    decision = retention.decide(st["releases"], keep, current_of(st), st.get("previous"))
    paths = {r["deploy_id"]: r["path"] for r in st["releases"]}
    lines = [f"prune {cfg.host or 'localhost'}:{cfg.root}, keep {keep}" + (" (dry run: nothing is removed)" if dry_run else "")]
    removed: list[str] = []
    failed: dict[str, str] = {}
    for did in decision.remove:
        if dry_run:
            lines.append(f"  would remove {paths[did]} ({did})")
            continue
        if not state.has(did):
            failed[did] = "this controller has no record of it: prune it from the controller that deployed it"
            continue
        try:
            res = rollback_stage.run(cfg, state.load(did), transport, journal_event="pruned")
        except InUseError as exc:  # it became current or previous since the status was read: it stays
            decision.keep[did] = exc.message
            continue
        except ReleaseError as exc:
            failed[did] = exc.message
            continue
        if res.get("removed"):
            removed.append(did)
            lines.append(f"  removed {paths[did]} ({did})")
    for did, why in decision.keep.items():
        lines.append(f"  kept {paths.get(did, did)}: {why}")
    for did, why in failed.items():
        lines.append(f"  NOT removed {paths.get(did, did)}: {why}")
    data: dict[str, Any] = {
        "stage": "prune",
        "keep": keep,
        "dry_run": dry_run,
        "would_remove" if dry_run else "removed": list(decision.remove) if dry_run else removed,
        "kept": decision.keep,
        "failed": failed,
    }
    if failed:
        return StageResult(data, "\n".join(lines), 1, "; ".join(f"{d}: {w}" for d, w in failed.items()))
    return StageResult(data, "\n".join(lines))


def cli(cfg: Config, options: Options) -> StageResult:
    keep = options.keep if options.keep is not None else cfg.keep
    if options.keep is None and not keep:
        raise ConfigError("prune needs --keep N (or target.keep)", hint="release prune --keep 5 --dry-run")
    return run(cfg, keep, options.dry_run)
