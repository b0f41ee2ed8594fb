"""The plan lock (G2): what ``plan`` pins, written once, and the check ``deploy`` makes.

``.release/plan.lock`` is JSON holding the locked fields and the sha256 of its own
canonical content. ``deploy`` refuses (exit 4) anything other than the locked plan: a
different commit, version, target, strategy or smoke set is named and nothing happens.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from . import names
from .config import Config
from .errors import RefusedError
from .state import write_json

STAMP = "<stamp>"


def lock_path(cfg: Config) -> Path:
    return cfg.state / "plan.lock"


def locked_fields(cfg: Config, head: str, version: str) -> dict[str, Any]:
    """The facts a lock pins: the same function feeds `plan` and `deploy`."""
    parent, folder = names.release_dir(cfg.strategy, cfg.dir, cfg.name, version, head, STAMP)
    return {
        "name": cfg.name,
        "head": head,
        "version": version,
        "host": cfg.host or "localhost",
        "root": cfg.root,
        "parent": parent,
        "dir": folder,
        "strategy": cfg.strategy,
        "smoke": [c.to_dict() for c in cfg.checks],
    }


def digest(doc: dict[str, Any]) -> str:
    body = {k: v for k, v in doc.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write(cfg: Config, fields: dict[str, Any], created: str) -> dict[str, Any]:
    lock = {**fields, "created": created}
    lock["sha256"] = digest(lock)
    write_json(lock_path(cfg), lock)
    return lock


def check_lock(cfg: Config, head: str, version: str, *, no_plan: bool) -> None:
    """Refuse (exit 4) a deploy of ``head``/``version`` that differs from the locked plan."""
    path = lock_path(cfg)
    if no_plan or not path.is_file():
        return
    try:
        lock = json.loads(path.read_text())
    except ValueError as exc:
        raise RefusedError(f"plan lock {path} is not valid JSON", hint="rerun `release plan`") from exc
    if not isinstance(lock, dict) or lock.get("sha256") != digest(lock):
        raise RefusedError(f"plan lock {path} was altered after it was written (sha256 mismatch)", hint="rerun `release plan` and review it")
    now = locked_fields(cfg, head, version)
    diffs = [f"{k}: locked {lock.get(k)!r}, now {now[k]!r}" for k in now if lock.get(k) != now[k]]
    if diffs:
        raise RefusedError(
            "deploy differs from the locked plan: " + "; ".join(d if len(d) < 300 else d[:300] + "..." for d in diffs),
            hint="rerun `release plan` to review and lock the new plan, or pass --no-plan",
        )
