"""Stage ``deploy``: ship the bundle, verify it on the target, unpack side-by-side.

    plan = make_plan(cfg, facts...)    # pure: the same plan `release plan` shows
    run(cfg, plan, transport)          # acts, through the target agent

On the target (release/agent.py): lock the root, clean leftovers of killed runs, record
the pre-state, refuse an existing target, receive + checksum, pre-scan every member,
unpack into a private staging folder, verify each file against BUNDLE-MANIFEST.json,
write DEPLOY-MANIFEST.txt, sync, and rename into place in one step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import bundlefile, names, planlock, progress, reconcile
from .config import Config
from .errors import BlockedError, OutcomeUnknownError, RefusedError, ReleaseError
from .remote.client import Agent
from .remote.transport import Transport, for_config
from .source import git as gitsource
from .stage import Options, StageResult
from .state import State, Status, landed_fields, now_iso

if TYPE_CHECKING:  # the request shapes, for the type checker only
    from .agent.messages import DeployRequest, TidyRequest, TrustRequest


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
        return names.rollback_command(self.target)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["target"] = self.target
        d["rollback"] = self.rollback_command
        return d


def release_dir(cfg: Config, version: str, sha: str, stamp: str) -> tuple[str, str]:
    """(parent relative to root, folder name) for the configured strategy."""
    return names.release_dir(cfg.strategy, cfg.dir, cfg.name, version, sha, stamp)


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


@dataclass(frozen=True)
class Chosen:
    """The bundle to deploy, and the bytes of its checksum file as read once."""

    path: Path
    sha256: str
    version: str
    sums: bytes


def choose_bundle(cfg: Config, head: str, explicit: str | None) -> Chosen:
    """The bundle, its sha256 and the .sha256 file's bytes (read once: what is verified is what is used)."""
    path = Path(explicit).resolve() if explicit else bundlefile.find_newest(cfg.out, cfg.name, head)
    if not path.is_file():
        raise BlockedError(f"bundle not found: {path}", hint="run `release bundle` first or fix --bundle")
    parsed = names.parse_bundle_name(cfg.name, path.name)
    if parsed is None:
        raise RefusedError(f"{path.name} is not a bundle of {cfg.name}", hint="deploy a bundle written by `release bundle` for this config")
    if parsed.sha7 != head[:7]:
        raise RefusedError(
            f"bundle {path.name} is of commit {parsed.sha7}, the recorded HEAD is {head[:12]}",
            hint="bundle the recorded HEAD, or change source.head",
        )
    sums = bundlefile.read_checksum_bytes(path)
    return Chosen(path, bundlefile.parse_checksum(path, sums), parsed.version, sums)


def prepare(cfg: Config, explicit_bundle: str | None, stamp: str | None = None) -> tuple[DeployPlan, Chosen]:
    """Read the facts and compute the plan (no change anywhere); one deploy id, for one host or a fleet."""
    src = gitsource.resolve(cfg)
    chosen = choose_bundle(cfg, src.sha, explicit_bundle)
    stamp = stamp or names.utc_stamp()
    return make_plan(cfg, src.sha, chosen.path, chosen.sha256, chosen.version, stamp, names.new_deploy_id()), chosen


def check_before(cfg: Config, plan: DeployPlan, chosen: Chosen, *, no_plan: bool) -> None:
    """The controller-side gates of a deploy: the plan lock and the bundle's signature."""
    planlock.check_lock(cfg, plan.head, plan.version, no_plan=no_plan)
    if cfg.allowed_signers:
        from . import signing

        # the signature is checked over the very bytes whose checksum the target will verify
        signing.verify(chosen.path, cfg.allowed_signers, chosen.sums)
    if cfg.allowed_signers:  # a signed release ships with its SBOM and provenance, as its checksum file lists them
        from . import bundleverify
        from .agent.trust import parse_sums

        try:
            sums = parse_sums(chosen.sums)
        except ValueError as exc:
            raise RefusedError(f"{chosen.path.name}.sha256: {exc}", hint="rebuild the bundle") from None
        problems = bundleverify.beside(chosen.path, sums, chosen.sha256, plan.head)[0]
        if problems:
            raise RefusedError(
                problems[0], hint="deploy the bundle with the SBOM and provenance written beside it (release verify --bundle shows every problem)"
            )


def agent_request(cfg: Config, plan: DeployPlan, *, break_lock: bool = False, ship_only: bool = False, sums: bytes | None = None) -> DeployRequest:
    """The agent's deploy request. ``sums``: the checksum file's bytes as ``prepare`` read them
    (what the controller checked is what the target checks, never the file read again)."""
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
    req: DeployRequest = {
        "root": plan.root,
        "parent": plan.parent,
        "dir": plan.dir,
        "deploy_id": plan.deploy_id,
        "bundle": Path(plan.bundle).name,
        "bundle_sha256": plan.bundle_sha256,
        "create_root": cfg.create_root,
        "shared": list(cfg.shared),
        "shared_files": list(cfg.shared_files),
        "break_lock": break_lock,
        "ship_only": ship_only,
        "expect": {"name": plan.name, "version": plan.version, "commit": plan.head},
        "manifest": manifest,
    }
    if cfg.trust:
        req["trust"] = trust_material(Path(plan.bundle), cfg.trust, sums)
    return req


def trust_material(bundle: Path, signers: str, sums: bytes | None = None) -> TrustRequest:
    """What the target checks against its own signers (``target.trust``): the checksum
    file, its signature and the provenance beside the bundle, each read once, bounded ('' for
    a file that is not there: the target refuses it, naming it)."""
    from .agent import trust

    def text(path: Path, limit: int) -> str:
        try:
            with path.open("rb") as f:
                return f.read(limit + 1).decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    return {
        "signers": signers,
        "sums": (sums if sums is not None else bundlefile.read_checksum_bytes(bundle)).decode("utf-8", "replace"),
        "sig": text(bundle.with_name(bundle.name + ".sha256.sig"), trust.MAX_SIG),
        "provenance": text(bundle.with_name(bundle.name + trust.PROVENANCE_SUFFIX), trust.MAX_PROVENANCE),
    }


def run(cfg: Config, plan: DeployPlan, transport: Transport, *, break_lock: bool = False, ship_only: bool = False, sums: bytes | None = None) -> StageResult:
    state = State(cfg.state)
    record: dict[str, Any] = {**plan.to_dict(), "status": Status.STARTED.value, "started": now_iso(), "config": str(cfg.path)}
    if not ship_only:
        reconcile.settle(cfg, state, transport)
        for landed in state.open_records():
            if landed.get("rerun_pending") and landed["status"] == Status.DEPLOYED and landed.get("bundle_sha256") == plan.bundle_sha256:
                # the rerun of a deploy whose answer was lost: it had landed, so it is done;
                # what its killed run left behind (lock, staging) is cleaned under the lock
                tidy: TidyRequest = {"root": plan.root, "parent": plan.parent, "deploy_id": landed["deploy_id"], "break_lock": break_lock}
                landed["cleaned_leftovers"] = Agent(transport).tidy(tidy).get("cleaned", [])
                landed.pop("rerun_pending", None)
                state.save(landed)
                return _result(plan, landed, f"already deployed by {landed['deploy_id']} (its outcome was unknown; the target holds it)")
        state.save(record)
        state.audit("deploy", deploy_id=plan.deploy_id, bundle=Path(plan.bundle).name, target=f"{plan.host}:{plan.target}", result="started")
    try:
        req = agent_request(cfg, plan, break_lock=break_lock, ship_only=ship_only, sums=sums)
        with progress.task(f"ship, verify and unpack on {plan.host}"):
            if transport.same_machine and not ship_only:
                req["bundle_path"] = plan.bundle
                result = dict(Agent(transport).deploy(req))
            else:
                with open(plan.bundle, "rb") as stdin:
                    result = dict(Agent(transport).deploy(req, stdin=stdin))
    except ReleaseError as exc:
        if not ship_only:
            # an answer that never came is "unknown" (reconciled later), never "failed"
            status = Status.UNKNOWN.value if isinstance(exc, OutcomeUnknownError) else Status.FAILED.value
            record.update(status=status, finished=now_iso(), error=exc.message)
            state.save(record)
            state.audit(
                "deploy",
                deploy_id=plan.deploy_id,
                target=f"{plan.host}:{plan.target}",
                result=f"{status} (exit {exc.exit_code}): {exc.message}",
            )
        raise
    if ship_only:
        return StageResult({"stage": "deploy", "shipped": True, **plan.to_dict()})
    record.update(landed_fields(result), finished=now_iso(), cleaned_leftovers=result.get("cleaned", []))
    state.save(record)
    state.audit("deploy", deploy_id=plan.deploy_id, bundle=Path(plan.bundle).name, target=f"{plan.host}:{plan.target}", result="deployed")
    return _result(plan, record, "deployed")


def _result(plan: DeployPlan, record: dict[str, Any], how: str) -> StageResult:
    """The stage's answer for the deploy ``record`` describes (this plan's, or an earlier one's)."""
    target, deploy_id = record["target"], record["deploy_id"]
    text = (
        f"{how}: {plan.name} {plan.version} ({plan.head[:12]}) to {plan.host}:{target}\n"
        f"deploy_id: {deploy_id}\nfiles: {record['files']}  tree_sha256: {record['tree_sha256']}\n"
        f"parent listing sha256 before: {record['parent_listing_sha256_before']}\n"
        f"rollback: release rollback --deploy-id {deploy_id}   (equivalent: {names.rollback_command(target)})"
    )
    data = {
        "stage": "deploy",
        **plan.to_dict(),
        "deploy_id": deploy_id,
        "target": target,
        "dir": record.get("dir", plan.dir),
        "rollback": names.rollback_command(target),
        "files": record["files"],
        "tree_sha256": record["tree_sha256"],
        "parent_listing_sha256_before": record["parent_listing_sha256_before"],
        "cleaned_leftovers": record.get("cleaned_leftovers", []),
    }
    return StageResult(data, text)


def cli(cfg: Config, options: Options) -> StageResult:
    plan, chosen = prepare(cfg, options.bundle)
    check_before(cfg, plan, chosen, no_plan=options.no_plan)
    return run(cfg, plan, for_config(cfg), break_lock=options.break_lock, ship_only=options.ship_only, sums=chosen.sums)
