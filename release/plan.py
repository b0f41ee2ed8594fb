"""Stage ``plan`` (G1, G2): compute the whole deploy plan, change nothing, lock it.

The plan is computed by the same functions that ``deploy`` uses (``gitsource.resolve``,
``gitsource.project_version``, ``deploy.release_dir``); ``deploy`` then refuses (exit 4)
to run anything other than the locked plan: a different commit, target, strategy or
smoke set than locked is named and nothing happens. ``--no-plan`` skips the lock.

Writes ``.release/DEPLOY-PLAN.md`` (for a human reviewer) and ``.release/plan.lock``
(JSON with the sha256 of its own canonical content).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

from . import dbcheck, gitsource
from .config import Config
from .errors import BlockedError, ReleaseError
from .state import State, now_iso, private_dir, write_json

PASS, BLOCKED, UNSAFE = "PASS", "BLOCKED", "UNSAFE"
STAMP = "<stamp>"


def lock_path(cfg: Config) -> Path:
    return cfg.state / "plan.lock"


def smoke_set(cfg: Config) -> list[dict[str, Any]]:
    return [c.to_dict() for c in cfg.checks]


def locked_fields(cfg: Config, head: str, version: str) -> dict[str, Any]:
    """The facts a lock pins: the same function feeds `plan` and `deploy`."""
    from .deploy import release_dir

    parent, folder = release_dir(cfg, version, head, STAMP)
    return {
        "name": cfg.name,
        "head": head,
        "version": version,
        "host": cfg.host or "localhost",
        "root": cfg.root,
        "parent": parent,
        "dir": folder,
        "strategy": cfg.strategy,
        "smoke": smoke_set(cfg),
    }


def _digest(doc: dict[str, Any]) -> str:
    body = {k: v for k, v in doc.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def compute(cfg: Config) -> dict[str, Any]:
    """Read facts (source, target) and compute the plan and gate verdicts. Changes nothing."""
    gates: dict[str, dict[str, str]] = {}
    plan: dict[str, Any] = {"name": cfg.name, "config": str(cfg.path), "computed": now_iso(), "gates": gates}
    try:
        src = gitsource.resolve(cfg)
    except BlockedError as exc:
        gates["G1 source"] = {"verdict": BLOCKED, "reason": exc.message}
        plan["blocked_record"] = {
            "missing": f"commit {cfg.head}",
            "looked_in": cfg.repo_location(),
            "detail": exc.detail,
            "deliver_by": [
                f"fetch it into the repository: git -C {cfg.repo_location()} fetch origin {cfg.head}",
                "point source.repo at a `git bundle` file that holds it (git bundle create app.bundle --all)",
                "point source.repo at a path or URL that has it",
            ],
        }
        return plan
    version = gitsource.project_version(src)
    gates["G1 source"] = {"verdict": PASS, "reason": f"{cfg.head} = {src.sha} in {src.location}"}
    fields = locked_fields(cfg, src.sha, version.version)
    plan.update(fields)
    plan["commit_time"] = src.commit_time
    plan["bundle_pattern"] = f"{cfg.name}-{version.version}-{src.sha7}-{STAMP}.tar.gz (artifacts: {', '.join(cfg.artifacts) or 'none'})"
    from .transport import for_config

    target_dir = fields["dir"]
    try:
        facts = for_config(cfg).agent("facts", {"root": cfg.root, "parent": fields["parent"], "dir": target_dir})
        facts.pop("_log", None)
    except ReleaseError as exc:
        gates["G3 deploy target"] = {"verdict": BLOCKED, "reason": f"cannot read the target: {exc.message}"}
        facts = {}
    plan["target_facts"] = facts
    target_path = f"{cfg.root}/{fields['parent'] + '/' if fields['parent'] else ''}{target_dir}"
    plan["target"] = target_path
    plan["rollback"] = f"release rollback --deploy-id <deploy_id>   (equivalent: rm -rf -- {target_path})"
    if facts:
        if not facts["root_exists"] and not cfg.create_root:
            gates["G3 deploy target"] = {
                "verdict": BLOCKED,
                "reason": f"target root {cfg.root} does not exist (set target.create_root or create it)",
            }
        elif STAMP not in target_dir and facts["target_kind"] != "absent":
            gates["G3 deploy target"] = {
                "verdict": UNSAFE,
                "reason": f"{target_path} already exists ({facts['target_kind']}); it is never overwritten",
            }
        elif facts.get("lock"):
            gates["G3 deploy target"] = {"verdict": BLOCKED, "reason": f"target root is locked: {facts['lock']}"}
        else:
            gates["G3 deploy target"] = {
                "verdict": PASS,
                "reason": f"{target_path} does not exist; parent listing sha256 {facts['parent_listing_sha256']}",
            }
    gates["G4 runtime skeleton"] = (
        {"verdict": PASS, "reason": f"provision: {', '.join(cfg.provision_dirs)}"} if cfg.provision_dirs else {"verdict": PASS, "reason": "nothing configured"}
    )
    missing = [c.options["dsn_env"] for c in cfg.checks if c.kind == "db-readonly" and not dbcheck.dsn_from_env(c) and not c.options.get("demo")]
    if not cfg.checks:
        gates["G5/G6 smoke"] = {"verdict": BLOCKED, "reason": "no smoke checks configured"}
    elif missing:
        gates["G5/G6 smoke"] = {"verdict": BLOCKED, "reason": f"environment variable(s) not set: {', '.join(missing)}"}
    else:
        gates["G5/G6 smoke"] = {"verdict": PASS, "reason": f"{len(cfg.checks)} checks: " + ", ".join(c.name for c in cfg.checks)}
    bad = [g for g, v in gates.items() if v["verdict"] != PASS]
    gates["G2 plan"] = {"verdict": PASS if not bad else BLOCKED, "reason": "locked" if not bad else "not locked: " + ", ".join(bad)}
    return plan


def render(plan: dict[str, Any]) -> str:
    lines = [
        f"# Deploy plan: {plan['name']}",
        "",
        f"Computed {plan['computed']} from `{plan['config']}`. Nothing was changed to compute it.",
        "",
    ]
    lines += ["## Gates", "", "| gate | verdict | reason |", "|---|---|---|"]
    for gate in sorted(plan["gates"]):
        v = plan["gates"][gate]
        lines.append(f"| {gate} | {v['verdict']} | {v['reason'].replace('|', '/')} |")
    if "blocked_record" in plan:
        rec = plan["blocked_record"]
        lines += [
            "",
            "## STOP: source unavailable",
            "",
            f"- missing: {rec['missing']}",
            f"- looked in: {rec['looked_in']}",
            "- accepted ways to deliver it:",
        ]
        lines += [f"  - {w}" for w in rec["deliver_by"]]
        return "\n".join(lines) + "\n"
    facts = plan.get("target_facts", {})
    lines += [
        "",
        "## What deploy will do",
        "",
        "```",
        f"head:      {plan['head']} (version {plan['version']})",
        f"bundle:    {plan['bundle_pattern']}",
        f"target:    {plan['host']}:{plan['target']}",
        f"strategy:  {plan['strategy']}",
        f"pre-state: target {facts.get('target_kind', '?')}; parent listing sha256 {facts.get('parent_listing_sha256', '?')}",
        f"rollback:  {plan['rollback']}",
        "```",
        "",
        "## Smoke set",
        "",
    ]
    lines += [f"{i + 1}. `{c['name']}` ({c['kind']})" for i, c in enumerate(plan["smoke"])]
    return "\n".join(lines) + "\n"


def cli(cfg: Config, args: argparse.Namespace) -> dict[str, Any]:
    plan = compute(cfg)
    private_dir(cfg.state)
    md = cfg.state / "DEPLOY-PLAN.md"
    md.write_text(render(plan))
    verdicts = {g: v["verdict"] for g, v in plan["gates"].items()}
    out: dict[str, Any] = {"stage": "plan", "plan": str(md), "gates": plan["gates"], "_text": render(plan)}
    if BLOCKED in verdicts.values() or UNSAFE in verdicts.values():
        code = 4 if UNSAFE in verdicts.values() else 3
        out["exit_code"] = code
        out["failed"] = "; ".join(f"{g}: {v['verdict']}: {v['reason']}" for g, v in plan["gates"].items() if v["verdict"] != PASS)
        lock_path(cfg).unlink(missing_ok=True)  # a stale lock must not outlive a failed plan
        State(cfg.state).audit("plan", result=f"{'UNSAFE' if code == 4 else 'BLOCKED'}")
        return out
    lock = {
        **{k: plan[k] for k in ("name", "head", "version", "host", "root", "parent", "dir", "strategy", "smoke")},
        "created": plan["computed"],
    }
    lock["sha256"] = _digest(lock)
    write_json(lock_path(cfg), lock)
    out["lock"] = str(lock_path(cfg))
    out["lock_sha256"] = lock["sha256"]
    State(cfg.state).audit("plan", result=f"locked {lock['sha256']}", head=plan["head"])
    return out


def check_lock(cfg: Config, deploy_plan: Any, *, no_plan: bool) -> None:
    """Refuse (exit 4) a deploy that differs from the locked plan, naming the difference."""
    from .errors import RefusedError

    path = lock_path(cfg)
    if no_plan or not path.is_file():
        return
    try:
        lock = json.loads(path.read_text())
    except ValueError as exc:
        raise RefusedError(f"plan lock {path} is not valid JSON", hint="rerun `release plan`") from exc
    if lock.get("sha256") != _digest(lock):
        raise RefusedError(f"plan lock {path} was altered after it was written (sha256 mismatch)", hint="rerun `release plan` and review it")
    now = locked_fields(cfg, deploy_plan.head, deploy_plan.version)
    diffs = [f"{k}: locked {lock.get(k)!r}, now {now[k]!r}" for k in now if lock.get(k) != now[k]]
    if diffs:
        raise RefusedError(
            "deploy differs from the locked plan: " + "; ".join(d if len(d) < 300 else d[:300] + "..." for d in diffs),
            hint="rerun `release plan` to review and lock the new plan, or pass --no-plan",
        )
