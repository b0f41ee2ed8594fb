"""Plan and lock (G1, G2): what plan shows is what deploy does."""

from __future__ import annotations

import json
from pathlib import Path

from ..support import Repo, run_release, tree_state, write_config


def _setup(project: Repo, tmp_path: Path, transport: dict[str, object]) -> tuple[Path, Path]:
    root = tmp_path / "opt" / "dot"
    (root / "demo-app").mkdir(parents=True)
    (root / "demo-app" / "v04.txt").write_text("running")
    checks = [{"kind": "import", "modules": ["demo_app"]}]
    cfg = write_config(tmp_path / "release.toml", project.path, target={"root": str(root), **transport}, checks=checks)
    return cfg, root


def test_plan_locks_and_deploy_runs_the_locked_plan(project: Repo, tmp_path: Path, transport: dict[str, object]) -> None:
    cfg, root = _setup(project, tmp_path, transport)
    before = tree_state(root)
    cp = run_release("--config", cfg, "--json", "plan")
    assert cp.returncode == 0, cp.stderr
    res = json.loads(cp.stdout)
    assert all(g["verdict"] == "PASS" for g in res["gates"].values())
    assert tree_state(root) == before, "plan changes nothing"
    md = (cfg.parent / ".release" / "DEPLOY-PLAN.md").read_text()
    sha = project.git("rev-parse", "HEAD")
    assert sha in md and f"rm -rf -- {root}/demo-app-v0.6.0" in md and "| G1 source | PASS |" in md
    lock = json.loads((cfg.parent / ".release" / "plan.lock").read_text())
    assert lock["head"] == sha and lock["dir"] == "demo-app-v0.6.0" and len(lock["sha256"]) == 64
    assert run_release("--config", cfg, "bundle").returncode == 0
    cp = run_release("--config", cfg, "--json", "deploy")
    assert cp.returncode == 0, cp.stderr
    assert json.loads(cp.stdout)["target"] == f"{root}/demo-app-v0.6.0"


def test_deploy_differing_from_the_lock_is_refused(project: Repo, tmp_path: Path) -> None:
    cfg, root = _setup(project, tmp_path, {})
    assert run_release("--config", cfg, "plan").returncode == 0
    project.write("new.txt", "a new commit")
    project.commit("after the plan")
    assert run_release("--config", cfg, "bundle").returncode == 0
    before = tree_state(root)
    cp = run_release("--config", cfg, "deploy")
    assert cp.returncode == 4 and "locked plan" in cp.stderr and "head:" in cp.stderr
    assert tree_state(root) == before
    # a changed strategy and smoke set are named too
    cfg.write_text(cfg.read_text().replace("[target]", '[target]\nstrategy = "timestamped"').replace('"demo_app"', '"demo_app.core"'))
    cp = run_release("--config", cfg, "deploy")
    assert cp.returncode == 4 and "strategy:" in cp.stderr and "smoke:" in cp.stderr
    assert tree_state(root) == before
    # --no-plan runs without the lock
    assert run_release("--config", cfg, "deploy", "--no-plan").returncode == 0


def test_tampered_lock_is_refused(project: Repo, tmp_path: Path) -> None:
    cfg, _ = _setup(project, tmp_path, {})
    assert run_release("--config", cfg, "plan").returncode == 0
    lock_path = cfg.parent / ".release" / "plan.lock"
    lock = json.loads(lock_path.read_text())
    lock["root"] = "/somewhere/else"
    lock_path.write_text(json.dumps(lock))
    assert run_release("--config", cfg, "bundle").returncode == 0
    cp = run_release("--config", cfg, "deploy")
    assert cp.returncode == 4 and "altered" in cp.stderr


def test_missing_commit_blocks_the_plan_with_the_record(project: Repo, tmp_path: Path) -> None:
    cfg, root = _setup(project, tmp_path, {})
    cfg.write_text(cfg.read_text().replace('head = "HEAD"', 'head = "6625f76"'))
    before = tree_state(root)
    cp = run_release("--config", cfg, "plan")
    assert cp.returncode == 3
    md = (cfg.parent / ".release" / "DEPLOY-PLAN.md").read_text()
    assert "STOP: source unavailable" in md and "6625f76" in md and "git bundle" in md and str(project.path) in md
    assert not (cfg.parent / ".release" / "plan.lock").exists()
    assert tree_state(root) == before


def test_existing_target_makes_the_plan_unsafe(project: Repo, tmp_path: Path) -> None:
    cfg, root = _setup(project, tmp_path, {})
    (root / "demo-app-v0.6.0").mkdir()
    cp = run_release("--config", cfg, "--json", "plan")
    assert cp.returncode == 4
    assert json.loads(cp.stdout)["gates"]["G3 deploy target"]["verdict"] == "UNSAFE"
    assert not (cfg.parent / ".release" / "plan.lock").exists()


def test_plan_shows_the_objects_bundle_and_deploy_execute(project: Repo, tmp_path: Path) -> None:
    """`plan --json` carries the BundlePlan and DeployPlan that `bundle` and `deploy` build
    (placeholders for the stamp, deploy id and bundle hash only): the bundle's file name,
    the target path and the rollback command a deploy reports are the plan's, filled in."""
    cfg, root = _setup(project, tmp_path, {})
    cfg.write_text(cfg.read_text().replace("[target]", '[target]\nstrategy = "timestamped"'))
    planned = json.loads(run_release("--config", cfg, "--json", "plan").stdout)
    bundled = json.loads(run_release("--config", cfg, "--json", "bundle").stdout)
    deployed = json.loads(run_release("--config", cfg, "--json", "deploy").stdout)
    stamp = bundled["build_stamp"]
    assert planned["bundle_plan"]["bundle"].replace("<stamp>", stamp) == Path(bundled["bundle"]).name
    dp = planned["deploy_plan"]
    assert dp["target"].replace("<stamp>", deployed["release_stamp"]) == deployed["target"]
    from release.names import rollback_command

    assert dp["rollback"] == rollback_command(dp["target"]) and deployed["rollback"] == rollback_command(deployed["target"])
    assert {k: v for k, v in dp.items() if k not in ("deploy_id", "bundle", "bundle_sha256", "release_stamp", "target", "dir", "rollback")} == {
        k: v for k, v in deployed.items() if k in dp and k not in ("deploy_id", "bundle", "bundle_sha256", "release_stamp", "target", "dir", "rollback")
    }
