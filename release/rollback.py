"""Stage ``rollback``: remove exactly what a deploy created, prove the parent is back.

The folder is removed only if the controller's record and the target's
DEPLOY-MANIFEST.txt name the same deploy id and the manifest says the folder did not
pre-exist. It is first renamed to a private trash name (atomic), then deleted without
following symlinks. With the timestamped strategy a `current` pointer aimed at the
release is restored to its previous target first.
"""

from __future__ import annotations

import argparse
from typing import Any

from .config import Config
from .errors import BlockedError, ReleaseError
from .state import State, now_iso
from .transport import Transport, for_config


def run(cfg: Config, record: dict[str, Any], transport: Transport, *, break_lock: bool = False) -> dict[str, Any]:
    state = State(cfg.state)
    if record.get("status") == "rolled-back":
        raise BlockedError(f"deploy {record['deploy_id']} was already rolled back", hint="nothing to do")
    req = {
        "root": record["root"],
        "target": record["target"],
        "deploy_id": record["deploy_id"],
        "previous_current": (record.get("promotion") or {}).get("previous"),
        "remove_parent_if_empty": record.get("parent_existed") is False,
        "break_lock": break_lock,
    }
    try:
        result = transport.agent("rollback", req)
    except ReleaseError as exc:
        state.audit("rollback", deploy_id=record["deploy_id"], target=record["target"], result=f"failed (exit {exc.exit_code}): {exc.message}")
        raise
    record.update(status="rolled-back", rolled_back=now_iso(), parent_listing_sha256_after=result["parent_listing_sha256_after"])
    state.save(record)
    ok = bool(result["parent_restored"])
    state.audit("rollback", deploy_id=record["deploy_id"], target=record["target"], result="removed" + ("" if ok else " (parent listing differs)"))
    text = (
        f"removed {record['host']}:{result['removed']} (deploy {record['deploy_id']})\n"
        f"pointer: {result['pointer']}\n"
        f"parent listing sha256 before: {result['parent_listing_sha256_before']}\n"
        f"parent listing sha256 after:  {result['parent_listing_sha256_after']}\n"
        + (
            "parent folder is back to its pre-deploy state"
            if ok
            else "WARNING: the parent listing differs from its pre-deploy state: something else changed there since"
        )
    )
    out: dict[str, Any] = {"stage": "rollback", "deploy_id": record["deploy_id"], **result, "_text": text}
    if not ok:
        out["exit_code"] = 1
        out["failed"] = "parent listing differs from the pre-deploy state"
    return out


def cli(cfg: Config, args: argparse.Namespace) -> dict[str, Any]:
    record = State(cfg.state).pick(args.deploy_id)
    return run(cfg, record, for_config(cfg), break_lock=args.break_lock)
