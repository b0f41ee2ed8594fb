"""The gates (G1-G6) as pure functions of the config and the gathered facts.

``plan`` gathers facts first (the source commit, the target's state, which DSN variables
are set) into a :class:`Facts`, then :func:`evaluate` decides every gate without any
I/O: the same inputs always give the same verdicts, and the rules are unit-tested
without git or sshd.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import Config

PASS, BLOCKED, UNSAFE = "PASS", "BLOCKED", "UNSAFE"


@dataclass(frozen=True)
class Gate:
    verdict: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"verdict": self.verdict, "reason": self.reason}


@dataclass(frozen=True)
class Facts:
    """Everything the gates look at, gathered before any gate is decided."""

    head: str = ""  # the resolved commit ("" when the source is unavailable)
    source_error: str = ""
    location: str = ""
    target_dir: str = ""  # the release folder's name (may hold the <stamp> placeholder)
    target_path: str = ""
    target: dict[str, Any] | None = None  # the agent's `facts` answer
    target_error: str = ""
    dsn_set: dict[str, bool] = field(default_factory=dict)  # dsn_env -> set?


def evaluate(cfg: Config, facts: Facts, stamp_placeholder: str = "<stamp>") -> dict[str, Gate]:
    """Every gate's verdict; G2 (the lock) passes only when all the others do."""
    gates: dict[str, Gate] = {}
    if not facts.head:
        gates["G1 source"] = Gate(BLOCKED, facts.source_error or f"{cfg.head} not found")
        return gates
    gates["G1 source"] = Gate(PASS, f"{cfg.head} = {facts.head} in {facts.location}")
    t = facts.target
    if t is None:
        gates["G3 deploy target"] = Gate(BLOCKED, f"cannot read the target: {facts.target_error}")
    elif not t.get("root_exists") and not cfg.create_root:
        gates["G3 deploy target"] = Gate(BLOCKED, f"target root {cfg.root} does not exist (set target.create_root or create it)")
    elif stamp_placeholder not in facts.target_dir and t.get("target_kind") != "absent":
        gates["G3 deploy target"] = Gate(UNSAFE, f"{facts.target_path} already exists ({t.get('target_kind')}); it is never overwritten")
    elif t.get("lock"):
        gates["G3 deploy target"] = Gate(BLOCKED, f"target root is locked: {t['lock']}")
    else:
        gates["G3 deploy target"] = Gate(PASS, f"{facts.target_path} does not exist; parent listing sha256 {t.get('parent_listing_sha256')}")
    gates["G4 runtime skeleton"] = Gate(PASS, f"provision: {', '.join(cfg.provision_dirs)}" if cfg.provision_dirs else "nothing configured")
    db_checks = [c for c in cfg.checks if c.kind == "db-readonly" and not c.options.get("demo")]
    missing = [str(c.options["dsn_env"]) for c in db_checks if not facts.dsn_set.get(str(c.options["dsn_env"]))]
    if not cfg.checks:
        gates["G5/G6 smoke"] = Gate(BLOCKED, "no smoke checks configured")
    elif missing:
        gates["G5/G6 smoke"] = Gate(BLOCKED, f"environment variable(s) not set: {', '.join(missing)}")
    else:
        gates["G5/G6 smoke"] = Gate(PASS, f"{len(cfg.checks)} checks: " + ", ".join(c.name for c in cfg.checks))
    bad = [g for g, v in gates.items() if v.verdict != PASS]
    gates["G2 plan"] = Gate(PASS if not bad else BLOCKED, "locked" if not bad else "not locked: " + ", ".join(bad))
    return gates


def worst(gates: dict[str, Gate]) -> int:
    """The exit code the gates give: 4 if any is UNSAFE, 3 if any is BLOCKED, else 0."""
    verdicts = {g.verdict for g in gates.values()}
    return 4 if UNSAFE in verdicts else (3 if BLOCKED in verdicts else 0)
