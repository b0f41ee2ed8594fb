"""Smoke (G5 on the target over both transports, G6 against a real PostgreSQL)."""

from __future__ import annotations

import json
import shutil
import stat
import sys
from pathlib import Path

import pytest

from .conftest import EXAMPLE, Repo, git, run_release, write_config

G5 = [
    {"kind": "compileall"},
    {"kind": "import", "modules": ["cutter_agent", "cutter_agent.orchestrator"]},
    {"kind": "attr", "name": "version", "object": "cutter_agent:__version__", "startswith": "0.6"},
    {"kind": "attr", "name": "kill-switch", "object": "cutter_agent.orchestrator:__execution_enabled__", "equals": False},
    {"kind": "pytest", "args": ["tests/", "-q"], "expect_passed": 34},
    {
        "kind": "command",
        "name": "status",
        "argv": ["{python}", "cli.py", "orchestrate", "status"],
        "expect_output": "execution_enabled=False",
    },
]
G6_DEMO = {
    "kind": "db-readonly",
    "dsn_env": "RELEASE_TEST_UNSET_DSN",
    "demo": True,
    "role": "context_pack_readonly",
    "queries": ["select count(*) from iu"],
    "count_tables": ["iu", "review_decision"],
    "forbid_functions": ["fn_iu_create", "fn_iu_enact"],
}


def example_repo(path: Path) -> Repo:
    shutil.copytree(EXAMPLE, path, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    git(path, "init", "-q", "-b", "main")
    repo = Repo(path)
    repo.commit("iu-cutter 0.6.0")
    return repo


def deployed(tmp_path: Path, transport: dict[str, object], checks: list[dict[str, object]], repo: Repo | None = None) -> tuple[Path, Path]:
    repo = repo or example_repo(tmp_path / "iu-cutter")
    root = tmp_path / "opt" / "incomex" / "dot"
    cfg = write_config(
        tmp_path / "release.toml",
        repo.path,
        top={"name": "iu-cutter"},
        target={"root": str(root), "python": sys.executable, **transport},
        checks=checks,
    )
    for stage in (("bundle",), ("deploy", "--no-plan")):
        cp = run_release("--config", cfg, *stage)
        assert cp.returncode == 0, cp.stderr
    target = root / "iu-cutter-v0.6.0"
    assert target.is_dir()
    return cfg, target


def smoke(cfg: Path, *extra: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return run_release("--config", cfg, "--json", "smoke", *extra, env=env)


def test_full_smoke_passes_and_leaves_the_tree_unchanged(tmp_path: Path, transport: dict[str, object]) -> None:
    cfg, target = deployed(tmp_path, transport, [*G5, G6_DEMO])
    cp = smoke(cfg)
    assert cp.returncode == 0, cp.stderr + cp.stdout
    res = json.loads(cp.stdout)
    by_name = {c["name"]: c for c in res["checks"]}
    assert set(by_name) == {"compileall", "import", "version", "kill-switch", "pytest", "status", "db-readonly", "tree-unchanged"}
    assert all(c["status"] == "passed" for c in res["checks"])
    assert by_name["pytest"]["data"]["counts"]["passed"] == 34
    assert "embedded demo" in by_name["db-readonly"]["detail"]
    assert not list(target.rglob("__pycache__")) and not list(target.rglob(".pytest_cache"))
    assert run_release("--config", cfg, "verify").returncode == 0
    folder = Path(res["report"])
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(folder.parent.stat().st_mode) == 0o700
    report = json.loads((folder / "report.json").read_text())
    assert [c["status"] for c in report["checks"]] == ["passed"] * 8
    junit = (folder / "junit.xml").read_text()
    assert 'tests="8"' in junit and 'failures="0"' in junit


BREAKAGES = {
    "wrong-version": ("cutter_agent/__init__.py", '__version__ = "0.6.0"', '__version__ = "0.5.9"', "version"),
    "kill-switch-on": (
        "cutter_agent/orchestrator.py",
        "__execution_enabled__ = False",
        "__execution_enabled__ = True",
        "kill-switch",
    ),  # the app's own tests and status catch it too
    "failing-test": (
        "tests/test_cutter.py",
        'assert normalise("a   b\\t\\tc") == "a b c"',
        'assert normalise("a   b\\t\\tc") == "broken"',
        "pytest",
    ),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_broken_release_fails_with_the_reason(tmp_path: Path, transport: dict[str, object], breakage: str) -> None:
    rel, old, new, failing = BREAKAGES[breakage]
    repo = example_repo(tmp_path / "iu-cutter")
    text = (repo.path / rel).read_text()
    assert old in text
    repo.write(rel, text.replace(old, new))
    repo.commit(f"break: {breakage}")
    cfg, _ = deployed(tmp_path, transport, G5, repo)
    cp = smoke(cfg)
    assert cp.returncode == 1
    res = json.loads(cp.stdout)
    failed = {c["name"] for c in res["checks"] if c["status"] != "passed"}
    # the app's own suite (and status command) catch a wrong version / kill switch too
    expected = {failing} | {"wrong-version": {"pytest"}, "kill-switch-on": {"pytest", "status"}}.get(breakage, set())
    assert failed == expected
    assert failing in cp.stderr
    if breakage == "failing-test":
        detail = next(c["detail"] for c in res["checks"] if c["name"] == "pytest")
        assert "1 failed" in detail and "33 passed, expected 34" in detail


def test_hanging_check_is_killed_and_the_next_still_runs(tmp_path: Path) -> None:
    checks = [
        {"kind": "command", "name": "hang", "argv": ["{python}", "-c", "import time; time.sleep(60)"], "timeout": 2},
        {"kind": "import", "modules": ["cutter_agent"]},
    ]
    cfg, _ = deployed(tmp_path, {}, checks)
    cp = smoke(cfg)
    assert cp.returncode == 1
    res = json.loads(cp.stdout)
    assert [c["status"] for c in res["checks"]] == ["timeout", "passed", "passed"]
    assert res["checks"][0]["duration"] < 20


def test_live_mode_is_refused_before_anything(tmp_path: Path) -> None:
    cfg, _ = deployed(tmp_path, {}, G5[:1])
    cp = smoke(cfg, "--mode", "live")
    assert cp.returncode == 4 and "LIVE" in cp.stderr
    assert not (cfg.parent / ".release" / "reports").exists()


def test_forbidden_sql_in_config_is_exit_4_before_any_check_runs(tmp_path: Path) -> None:
    bad = {**G6_DEMO, "queries": ["select 1", "delete from iu"]}
    cfg, _ = deployed(tmp_path, {}, [G5[0], bad])
    cp = smoke(cfg)
    assert cp.returncode == 4 and "forbidden SQL" in cp.stderr
    assert not (cfg.parent / ".release" / "reports").exists()


def test_missing_dsn_variable_is_a_config_error(tmp_path: Path) -> None:
    check = {k: v for k, v in G6_DEMO.items() if k != "demo"}
    cfg, _ = deployed(tmp_path, {}, [check])
    cp = smoke(cfg, env={"RELEASE_TEST_UNSET_DSN": ""})
    assert cp.returncode == 2 and "RELEASE_TEST_UNSET_DSN" in cp.stderr


def test_no_secret_anywhere_in_the_full_pipeline(tmp_path: Path, app_db) -> None:  # type: ignore[no-untyped-def]
    """plan, bundle, deploy, smoke, status, verify, rollback with a password-holding DSN in the environment."""
    repo = example_repo(tmp_path / "iu-cutter")
    check = {**G6_DEMO, "dsn_env": "APP_RO_DSN", "role": app_db["role"], "demo": False}
    root = tmp_path / "opt" / "incomex" / "dot"
    cfg = write_config(
        tmp_path / "release.toml",
        repo.path,
        top={"name": "iu-cutter"},
        target={"root": str(root), "python": sys.executable},
        checks=[G5[1], check],
    )
    env = {"APP_RO_DSN": app_db["dsn"]}
    outputs = []
    for stage in (("plan",), ("bundle",), ("deploy",), ("smoke",), ("status",), ("verify",), ("rollback",)):
        cp = run_release("--config", cfg, "-v", *stage, env=env)
        assert cp.returncode == 0, (stage, cp.stderr)
        outputs += [cp.stdout, cp.stderr]
    # a malformed DSN, and an error path, must not leak it either
    cp = run_release("--config", cfg, "--json", "-v", "smoke", env={"APP_RO_DSN": "postgresql://x:" + app_db["password"] + "@[bad"})
    outputs += [cp.stdout, cp.stderr]
    password = app_db["password"].encode()
    assert not any(password in o.encode() for o in outputs)
    state = cfg.parent / ".release"
    checked = 0
    for p in tmp_path.rglob("*"):
        if p.is_file() and not p.is_symlink() and ".git" not in p.parts:
            assert password not in p.read_bytes(), p
            checked += 1
    assert checked > 10 and (state / "plan.lock").is_file() and (state / "DEPLOY-PLAN.md").is_file()
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for d in [state / "reports", state / "deploys", cfg.parent / "bundles", *(state / "reports").iterdir()]:
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d


def test_the_dsn_never_reaches_the_apps_own_code(tmp_path: Path) -> None:
    """Target checks run without the DSN variable: the app's tests cannot print it."""
    checks = [
        {"kind": "command", "name": "env", "argv": ["{python}", "-c", "import os; print(sorted(os.environ))"], "expect_output": "PATH"},
        {**G6_DEMO, "dsn_env": "APP_HIDDEN_DSN"},
    ]
    cfg, _ = deployed(tmp_path, {}, checks)
    secret = "postgresql://ro:NotForTheApp77@127.0.0.1:1/app"
    cp = smoke(cfg, env={"APP_HIDDEN_DSN": secret, "PGPASSWORD": "NotForTheApp77"})
    res = json.loads(cp.stdout)
    env_check = next(c for c in res["checks"] if c["name"] == "env")
    assert env_check["status"] == "passed"
    assert "APP_HIDDEN_DSN" not in env_check["detail"] and "PGPASSWORD" not in env_check["detail"]
    assert "NotForTheApp77" not in cp.stdout + cp.stderr
