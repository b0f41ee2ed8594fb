"""Stage ``plan`` (G1, G2): compute the whole deploy plan, change nothing, lock it.

The plan is computed by the same functions that ``deploy`` uses (``gitsource.resolve``,
``metadata.project_version``, ``names.release_dir``); gates are pure functions of
the gathered facts (``gates.evaluate``); ``deploy`` then refuses (exit 4)
to run anything other than the locked plan: a different commit, target, strategy or
smoke set than locked is named and nothing happens. ``--no-plan`` skips the lock.

Writes ``.release/DEPLOY-PLAN.md`` (for a human reviewer) and ``.release/plan.lock``
(JSON with the sha256 of its own canonical content; see ``planlock``).
"""

from __future__ import annotations

from typing import Any

from . import gates, planlock
from .config import Config
from .db import check as dbcheck
from .errors import BlockedError, ReleaseError
from .redact import redact
from .source import git as gitsource
from .source import metadata
from .stage import Options, StageResult
from .state import State, now_iso, private_dir


def compute(cfg: Config) -> dict[str, Any]:
    """Gather the facts (source, target, DSN variables), then decide the gates (pure). Changes nothing."""
    plan: dict[str, Any] = {"name": cfg.name, "config": str(cfg.path), "computed": now_iso()}
    dsn_set = {str(c.options["dsn_env"]): bool(dbcheck.dsn_from_env(c)) for c in cfg.checks if c.kind == "db-readonly"}
    try:
        src = gitsource.resolve(cfg)
    except BlockedError as exc:
        plan["gates"] = {k: g.to_dict() for k, g in gates.evaluate(cfg, gates.Facts(source_error=exc.message, dsn_set=dsn_set)).items()}
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
    version = metadata.project_version(src, cfg.state, cfg.version, cfg.version_from)
    fields = planlock.locked_fields(cfg, src.sha, version.version)
    plan.update(fields)
    plan["commit_time"] = src.commit_time
    plan["git_submodules"] = gitsource.submodules(src)  # a bundle carries none: refused unless bundle.submodules = "omit"
    plan["bundle_submodules"] = cfg.submodules
    # what is reviewed is what runs: the very plan objects `bundle` and `deploy` execute,
    # with a placeholder for what only the run knows (its stamp, its deploy id, the bundle's sha256)
    bundle_plan, deploy_plan = executed_plans(cfg, src, version)
    plan["bundle_plan"] = bundle_plan.to_dict()
    from . import bundle as bundle_stage

    plan["left_out"] = bundle_stage.left_out(bundle_plan, src).to_dict()
    plan["deploy_plan"] = deploy_plan.to_dict()
    plan["bundle_pattern"] = f"{bundle_plan.path.name} (artifacts: {', '.join(bundle_plan.artifacts) or 'none'})"
    plan["provenance"] = provenance_facts(bundle_plan)
    from .remote.client import for_config

    target_dir = deploy_plan.dir
    target_path = deploy_plan.target
    target: dict[str, Any] | None = None
    target_error = ""
    try:
        target = for_config(cfg).facts({"root": cfg.root, "parent": deploy_plan.parent, "dir": target_dir})
        target.pop("_log", None)
    except ReleaseError as exc:
        target_error = exc.message
    plan["target_facts"] = target or {}
    plan["target"] = target_path
    plan["rollback"] = f"release rollback --deploy-id {deploy_plan.deploy_id}   (equivalent: {deploy_plan.rollback_command})"
    facts = gates.Facts(
        head=src.sha,
        location=src.location,
        target_dir=target_dir,
        target_path=target_path,
        target=target,
        target_error=target_error,
        dsn_set=dsn_set,
    )
    plan["gates"] = {k: g.to_dict() for k, g in gates.evaluate(cfg, facts, planlock.STAMP).items()}
    if cfg.environment is not None:
        plan["environment"] = environment_plan(cfg, src.sha, target or {})
    if cfg.strategy == "timestamped" and (cfg.service or cfg.keep):
        plan["after_promote"] = after_promote(cfg, target is not None)
    return plan


def provenance_facts(bundle_plan: Any) -> dict[str, str]:
    """What the bundle's provenance statement will say (its subject's digest is known once built)."""
    from . import __version__
    from . import provenance as prov
    from .redact import redact

    return {
        "subject": f"{bundle_plan.path.name} (sha256 known when built)",
        "repository": redact(bundle_plan.repository),
        "commit": bundle_plan.sha,
        "config_sha256": bundle_plan.config_sha256,
        "builder": f"{prov.BUILDER_ID} release-pipeline {__version__}",
        "ci_run": prov.ci_run() or "(none: not in GitHub Actions)",
        "files": f"{bundle_plan.path.name}.cdx.json (SBOM, also inside), {bundle_plan.path.name}.intoto.json, both listed in its .sha256",
    }


def after_promote(cfg: Config, reachable: bool) -> dict[str, Any]:
    """What a promote of this deploy will run on the target (restart, health checks) and
    what ``target.keep`` would prune after it, as the target is now."""
    out: dict[str, Any] = {}
    if cfg.service.restart:
        out["restart"] = list(cfg.service.restart)
        out["restart_timeout"] = cfg.service.timeout
    out["health"] = [f"{c['name']} ({c['kind']}: {c.get('url') or c.get('address') or ' '.join(c.get('argv') or [])})" for c in cfg.service.checks]
    if cfg.keep:
        from . import prune

        out["keep"] = cfg.keep
        from .remote.client import for_config

        try:
            out["prune"] = prune.after_promote(cfg, for_config(cfg).status({"root": cfg.root})) if reachable else []
        except ReleaseError as exc:
            out["prune_error"] = exc.message
    return out


DEPLOY_ID = "<deploy_id>"  # known when the deploy runs
BUNDLE_SHA256 = "<sha256 of the bundle>"  # known when the bundle is built


def executed_plans(cfg: Config, src: gitsource.Source, version: metadata.VersionInfo) -> tuple[Any, Any]:
    """The ``BundlePlan`` that `bundle` builds and the ``DeployPlan`` that `deploy` executes,
    made by their own constructors, with placeholders for the stamp, the deploy id and the
    bundle's sha256: the target path, the bundle name and the rollback command shown are
    those objects' own properties (``planlock.STAMP`` is also what the lock pins)."""
    from . import bundle, deploy

    bundle_plan = bundle.make_plan(cfg, src, version, planlock.STAMP)
    deploy_plan = deploy.make_plan(cfg, src.sha, bundle_plan.path, BUNDLE_SHA256, version.version, planlock.STAMP, DEPLOY_ID)
    return bundle_plan, deploy_plan


def environment_plan(cfg: Config, head: str, target: dict[str, Any]) -> dict[str, Any]:
    """What the release's environment will be (from the newest bundle of the recorded HEAD),
    and which versions change against the release in service."""
    from . import bundle, bundlefile

    out: dict[str, Any] = {"extras": list(cfg.environment.extras if cfg.environment else ()), "groups": list(cfg.environment.groups if cfg.environment else ())}
    try:
        path = bundlefile.find_newest(cfg.out, cfg.name, head)
    except BlockedError:
        out["note"] = "resolved at bundle time (no bundle of the recorded HEAD yet)"
        return out
    manifest = bundle.read_manifest(path)
    env = manifest.get("environment") or {}
    sizes = {m["path"]: m.get("size", 0) for m in manifest.get("files", [])}
    new = {p["name"]: p["version"] for p in env.get("packages", [])}
    old: dict[str, str] = (target.get("deployed_env") or {}).get("packages", {})
    out.update(
        bundle=path.name,
        packages=len(new),
        lock_sha256=env.get("lock_sha256", ""),
        python=env.get("python", ""),
        platform=(env.get("platforms") or [""])[0],
        size=sum(int(sizes.get(p["path"], 0)) for p in env.get("packages", [])),
        changes=sorted(f"{n}: {old.get(n, '-')} -> {new.get(n, '-')}" for n in set(old) | set(new) if old.get(n) != new.get(n)),
        compared_with=(target.get("deployed_env") or {}).get("release", "nothing deployed"),
    )
    return out


_SUBMODULES = {
    "refuse": 'their files are not in the commit: bundle refuses it; vendor them, or set bundle.submodules = "omit"',
    "omit": "left out of the bundle: bundle.submodules = omit",
}


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
        *([f"submodules: {', '.join(plan['git_submodules'])} ({_SUBMODULES[plan['bundle_submodules']]})"] if plan.get("git_submodules") else []),
        *([_left_out_line(plan["left_out"])] if (plan.get("left_out") or {}).get("counts") else []),
        f"target:    {plan['host']}:{plan['target']}",
        f"strategy:  {plan['strategy']}",
        f"pre-state: target {facts.get('target_kind', '?')}; parent listing sha256 {facts.get('parent_listing_sha256', '?')}",
        f"rollback:  {plan['rollback']}",
        "```",
    ]
    prov = plan.get("provenance")
    if prov:
        lines += ["", "## Provenance it will ship", "", "```"]
        lines += [f"{k + ':':15}{v}" for k, v in prov.items()]
        lines.append("```")
    env = plan.get("environment")
    if env:
        lines += ["", "## Environment", "", "```"]
        if "note" in env:
            lines.append(f"extras {env['extras']}, groups {env['groups']}: {env['note']}")
        else:
            lines += [
                f"packages:  {env['packages']} wheels, {env['size'] / 1e6:.1f} MB, for Python {env['python']} on {env['platform']}",
                f"lock:      pylock.toml sha256 {env['lock_sha256']} ({env['bundle']})",
                f"changes against {env['compared_with']}:",
            ]
            lines += [f"  {c}" for c in env["changes"]] or ["  none"]
        lines.append("```")
    after = plan.get("after_promote")
    if after:
        lines += ["", "## After promote", "", "```"]
        if "restart" in after:
            lines.append(f"restart:   {' '.join(after['restart'])} (at most {after['restart_timeout']:g}s)")
        lines += [f"health:    {h}" for h in after["health"]]
        if after["health"] or "restart" in after:
            lines.append("on failure: current goes back to the release it replaced, restarted and health-checked there (exit 1)")
        if "prune" in after:
            gone = after["prune"]
            lines.append(f"prune:     target.keep = {after['keep']}: " + (", ".join(gone) + " would be removed" if gone else "nothing would be removed"))
        if "prune_error" in after:
            lines.append(f"prune:     unknown ({after['prune_error']})")
        lines.append("```")
    lines += [
        "",
        "## Smoke set",
        "",
    ]
    lines += [f"{i + 1}. `{c['name']}` ({c['kind']})" for i, c in enumerate(plan["smoke"])]
    return "\n".join(lines) + "\n"


def _left_out_line(left: dict[str, Any]) -> str:
    counts = ", ".join(f"{n} by {why}" for why, n in left["counts"].items())
    shown = ", ".join(left["paths"][:8]) + (" ..." if len(left["paths"]) > 8 else "")
    return f"left out: {counts} ({left['bytes']} bytes): {shown}"


def cli(cfg: Config, options: Options | None = None) -> StageResult:
    plan = compute(cfg)
    private_dir(cfg.state)
    md = cfg.state / "DEPLOY-PLAN.md"
    text = redact(render(plan))
    md.write_text(text)
    verdicts = {g: v["verdict"] for g, v in plan["gates"].items()}
    out: dict[str, Any] = {"stage": "plan", "plan": str(md), "gates": plan["gates"]}
    for key in ("bundle_plan", "deploy_plan", "left_out"):  # the executed objects' own serialisation, and what the bundle leaves out
        if key in plan:
            out[key] = plan[key]
    if gates.BLOCKED in verdicts.values() or gates.UNSAFE in verdicts.values():
        code = 4 if gates.UNSAFE in verdicts.values() else 3
        failed = "; ".join(f"{g}: {v['verdict']}: {v['reason']}" for g, v in plan["gates"].items() if v["verdict"] != gates.PASS)
        planlock.lock_path(cfg).unlink(missing_ok=True)  # a stale lock must not outlive a failed plan
        State(cfg.state).audit("plan", result=f"{'UNSAFE' if code == 4 else 'BLOCKED'}")
        return StageResult(out, text, code, failed)
    lock = planlock.write(cfg, {k: plan[k] for k in ("name", "head", "version", "host", "root", "parent", "dir", "strategy", "smoke")}, plan["computed"])
    out["lock"] = str(planlock.lock_path(cfg))
    out["lock_sha256"] = lock["sha256"]
    State(cfg.state).audit("plan", result=f"locked {lock['sha256']}", head=plan["head"])
    return StageResult(out, text)
