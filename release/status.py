"""Stages ``status`` (releases on the target root) and ``verify`` (re-hash against the manifest)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import Config
from .remote.client import for_config
from .stage import Options, StageResult
from .state import State, Status

if TYPE_CHECKING:  # the request shapes, for the type checker only
    from .agent.messages import VerifyRequest


def cli(cfg: Config, options: Options | None = None) -> StageResult:
    answer = for_config(cfg).status({"root": cfg.root})
    result: dict[str, Any] = {k: v for k, v in answer.items() if k != "_log"}
    result["releases"] = [dict(r) for r in answer["releases"]]
    state = State(cfg.state)
    records = state.records()
    known = {r["deploy_id"]: r.get("status") for r in records}
    lines = [f"target root: {cfg.host or 'localhost'}:{cfg.root}"]
    if result.get("lock"):
        lines.append(f"LOCKED: {result['lock']}")
    if result.get("leftovers"):
        lines.append("leftovers of interrupted runs (cleaned by the next deploy or rollback): " + ", ".join(result["leftovers"]))
    unsettled = [r["deploy_id"] for r in records if r.get("status") in (Status.STARTED, Status.UNKNOWN)]
    if unsettled:
        lines.append("outcome unknown (settled with the target by the next deploy or rollback): " + ", ".join(unsettled))
        result["unsettled"] = unsettled
    if state.corrupt:
        lines.append("unreadable deploy records (skipped): " + ", ".join(state.corrupt))
        result["corrupt_records"] = state.corrupt
    lines.append(f"current: {result.get('current', 'none')}")
    lines.append(f"previous (as the journal says): {result.get('previous') or 'none'}")
    if result.get("journal_skipped_lines"):
        lines.append(f"journal: {result['journal_skipped_lines']} torn or corrupt lines skipped")
    if not result["releases"]:
        lines.append("no releases deployed by this tool")
    for r in result["releases"]:
        r["controller_record"] = known.get(r["deploy_id"], "none")
        mark = "*" if r["promoted"] else " "
        signed = f"  signed by {r['signed_by']}" if r.get("signed_by") else ""
        state_word = r.get("journal") or "-"
        lines.append(f"{mark} {r['version']:<14} {str(r['head'])[:12]}  {r['release_stamp']}  {r['deploy_id']}  {state_word:<13} {r['path']}{signed}")
    lines.append("other entries: " + (", ".join(e for e in result["entries"] if e not in {r["path"].rsplit("/", 1)[-1] for r in result["releases"]}) or "none"))
    return StageResult({"stage": "status", **result}, "\n".join(lines))


SHOWN_PATHS = 50  # of each kind, in the text a person reads (--json lists them all)
SHOWN_CHARS = 300  # of one path


def _paths(label: str, paths: list[str]) -> list[str]:
    """``label path`` lines, at most ``SHOWN_PATHS`` of them and each path abridged: a
    release written into by its app (20,000 files in a cache, a tree 3,000 deep) is
    described, not poured onto the terminal."""
    lines = [f"  {label} {p if len(p) <= SHOWN_CHARS else p[: SHOWN_CHARS // 2] + ' ... ' + p[-SHOWN_CHARS // 2 :]}" for p in paths[:SHOWN_PATHS]]
    if len(paths) > SHOWN_PATHS:
        lines.append(f"  {label} ... and {len(paths) - SHOWN_PATHS} more (--json lists them all)")
    return lines


def verify_cli(cfg: Config, options: Options) -> StageResult:
    record = State(cfg.state).pick(options.deploy_id)
    req: VerifyRequest = {
        "target": record["target"],
        "tree_sha256": record.get("tree_sha256"),
        "manifest_sha256": record.get("manifest_sha256", ""),
        "env_sha256": record.get("env_sha256", ""),
    }
    result: dict[str, Any] = dict(for_config(cfg).verify(req))
    result.pop("_log", None)
    lines = [f"verify {record['host']}:{record['target']} ({result['files']} files)"]
    lines += _paths("added:  ", result["added"])
    lines += _paths("removed:", result["removed"])
    lines += _paths("changed:", result["changed"])
    lines += _paths("not a file or link (never opened):", result.get("special", []))
    if not result.get("deploy_manifest_intact", True):
        lines.append("  DEPLOY-MANIFEST.txt was changed after the deploy")
    if not result["manifest_intact"]:
        lines.append("  manifest: BUNDLE-MANIFEST.json or DEPLOY-MANIFEST.txt does not match the recorded tree_sha256")
    lines.append("clean: the release matches its manifest" if result["clean"] else "DRIFT: the release differs from its manifest")
    data = {"stage": "verify", "deploy_id": record["deploy_id"], **result}
    if not result["clean"]:
        return StageResult(data, "\n".join(lines), 1, "drift in the deployed release")
    return StageResult(data, "\n".join(lines))
