"""Stage ``deploy``: ship the bundle, verify it on the target, unpack side-by-side.

    plan = make_plan(cfg, facts...)    # pure: the same plan `release plan` shows
    run(cfg, plan, transport)          # acts, through the target agent

On the target (release/agent.py): lock the root, clean leftovers of killed runs, record
the pre-state, refuse an existing target, receive + checksum, pre-scan every member,
unpack into a private staging folder, verify each file against BUNDLE-MANIFEST.json,
write DEPLOY-MANIFEST.txt, sync, and rename into place in one step.
"""

from __future__ import annotations

import argparse
import re
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import bundle as bundle_stage
from . import gitsource, progress
from .config import Config
from .errors import BlockedError, RefusedError, ReleaseError
from .state import State, now_iso
from .transport import Transport, for_config

_NAME_RE = re.compile(r"^(?P<name>.+)-(?P<version>[^-/]+)-(?P<sha7>[0-9a-f]{7})-(?P<stamp>\d{8}T\d{6}Z)\.tar\.gz$")


@dataclass(frozen=True)
class DeployPlan:
    deploy_id: str
    name: str
    version: str
    head: str
    bundle: str
    bundle_sha256: str
    host: str
    root: str
    parent: str  # "" (side-by-side) or "releases" (timestamped), relative to root
    dir: str
    strategy: str
    release_stamp: str

    @property
    def parent_path(self) -> str:
        return f"{self.root}/{self.parent}" if self.parent else self.root

    @property
    def target(self) -> str:
        return f"{self.parent_path}/{self.dir}"

    @property
    def rollback_command(self) -> str:
        return f"rm -rf -- {self.target}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["target"] = self.target
        d["rollback"] = self.rollback_command
        return d


def new_deploy_id(stamp: str) -> str:
    return f"{stamp}-{secrets.token_hex(3)}"


def release_dir(cfg: Config, version: str, sha: str, stamp: str) -> tuple[str, str]:
    """(parent relative to root, folder name) for the configured strategy."""
    if cfg.strategy == "timestamped":
        return "releases", f"{cfg.name}-{version}-{sha[:7]}-{stamp}"
    return "", cfg.dir.format(name=cfg.name, version=version, sha=sha[:7], stamp=stamp)


def make_plan(cfg: Config, head: str, bundle: Path, bundle_sha256: str, version: str, stamp: str, deploy_id: str) -> DeployPlan:
    parent, folder = release_dir(cfg, version, head, stamp)
    return DeployPlan(
        deploy_id=deploy_id,
        name=cfg.name,
        version=version,
        head=head,
        bundle=str(bundle),
        bundle_sha256=bundle_sha256,
        host=cfg.host or "localhost",
        root=cfg.root,
        parent=parent,
        dir=folder,
        strategy=cfg.strategy,
        release_stamp=stamp,
    )


def choose_bundle(cfg: Config, head: str, explicit: str | None) -> tuple[Path, str, str]:
    """(bundle path, its sha256 from the .sha256 file, version from its name)."""
    path = Path(explicit).resolve() if explicit else bundle_stage.find_newest(cfg.out, cfg.name, head)
    if not path.is_file():
        raise BlockedError(f"bundle not found: {path}", hint="run `release bundle` first or fix --bundle")
    m = _NAME_RE.match(path.name)
    if not m or m["name"] != cfg.name:
        raise RefusedError(f"{path.name} is not a bundle of {cfg.name}", hint="deploy a bundle written by `release bundle` for this config")
    if m["sha7"] != head[:7]:
        raise RefusedError(
            f"bundle {path.name} is of commit {m['sha7']}, the recorded HEAD is {head[:12]}",
            hint="bundle the recorded HEAD, or change source.head",
        )
    return path, bundle_stage.read_checksum(path), m["version"]


def prepare(cfg: Config, explicit_bundle: str | None, stamp: str | None = None) -> DeployPlan:
    """Read the facts and compute the plan (no change anywhere)."""
    src = gitsource.resolve(cfg)
    path, sha256, version = choose_bundle(cfg, src.sha, explicit_bundle)
    stamp = stamp or bundle_stage.utc_stamp()
    return make_plan(cfg, src.sha, path, sha256, version, stamp, new_deploy_id(stamp))


def agent_request(cfg: Config, plan: DeployPlan, *, break_lock: bool = False, ship_only: bool = False) -> dict[str, Any]:
    manifest = {
        "name": plan.name,
        "version": plan.version,
        "head": plan.head,
        "release_stamp": plan.release_stamp,
        "deploy_id": plan.deploy_id,
        "bundle": Path(plan.bundle).name,
        "bundle_sha256": plan.bundle_sha256,
        "strategy": plan.strategy,
        "rollback_tool": f"release rollback --deploy-id {plan.deploy_id}",
    }
    return {
        "root": plan.root,
        "parent": plan.parent,
        "dir": plan.dir,
        "deploy_id": plan.deploy_id,
        "bundle": Path(plan.bundle).name,
        "bundle_sha256": plan.bundle_sha256,
        "create_root": cfg.create_root,
        "break_lock": break_lock,
        "ship_only": ship_only,
        "expect": {"name": plan.name, "version": plan.version, "commit": plan.head},
        "manifest": manifest,
    }


def run(cfg: Config, plan: DeployPlan, transport: Transport, *, break_lock: bool = False, ship_only: bool = False) -> dict[str, Any]:
    state = State(cfg.state)
    record: dict[str, Any] = {**plan.to_dict(), "status": "started", "started": now_iso(), "config": str(cfg.path)}
    if not ship_only:
        state.save(record)
        state.audit("deploy", deploy_id=plan.deploy_id, bundle=Path(plan.bundle).name, target=f"{plan.host}:{plan.target}", result="started")
    try:
        req = agent_request(cfg, plan, break_lock=break_lock, ship_only=ship_only)
        with progress.task(f"ship, verify and unpack on {plan.host}"):
            if transport.same_machine and not ship_only:
                result = transport.agent("deploy", {**req, "bundle_path": plan.bundle})
            else:
                with open(plan.bundle, "rb") as stdin:
                    result = transport.agent("deploy", req, stdin=stdin)
    except ReleaseError as exc:
        if not ship_only:
            record.update(status="failed", finished=now_iso(), error=exc.message)
            state.save(record)
            state.audit(
                "deploy",
                deploy_id=plan.deploy_id,
                target=f"{plan.host}:{plan.target}",
                result=f"failed (exit {exc.exit_code}): {exc.message}",
            )
        raise
    if ship_only:
        return {"stage": "deploy", "shipped": True, **plan.to_dict()}
    record.update(
        status="deployed",
        finished=now_iso(),
        parent_existed=result["parent_existed"],
        parent_listing_sha256_before=result["parent_listing_sha256_before"],
        files=result["files"],
        tree_sha256=result["tree_sha256"],
        cleaned_leftovers=result.get("cleaned", []),
    )
    state.save(record)
    state.audit("deploy", deploy_id=plan.deploy_id, bundle=Path(plan.bundle).name, target=f"{plan.host}:{plan.target}", result="deployed")
    text = (
        f"deployed {plan.name} {plan.version} ({plan.head[:12]}) to {plan.host}:{plan.target}\n"
        f"deploy_id: {plan.deploy_id}\nfiles: {result['files']}  tree_sha256: {result['tree_sha256']}\n"
        f"parent listing sha256 before: {result['parent_listing_sha256_before']}\n"
        f"rollback: release rollback --deploy-id {plan.deploy_id}   (equivalent: {plan.rollback_command})"
    )
    return {
        "stage": "deploy",
        **plan.to_dict(),
        "files": result["files"],
        "tree_sha256": result["tree_sha256"],
        "parent_listing_sha256_before": result["parent_listing_sha256_before"],
        "cleaned_leftovers": result.get("cleaned", []),
        "_text": text,
    }


def cli(cfg: Config, args: argparse.Namespace) -> dict[str, Any]:
    plan = prepare(cfg, args.bundle)
    from . import plan as plan_stage

    plan_stage.check_lock(cfg, plan, no_plan=args.no_plan)
    if cfg.allowed_signers:
        from . import signing

        signing.verify(Path(plan.bundle), cfg.allowed_signers)
    return run(cfg, plan, for_config(cfg), break_lock=args.break_lock, ship_only=getattr(args, "ship_only", False))
