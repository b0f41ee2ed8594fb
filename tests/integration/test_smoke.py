"""Smoke (G5 on the target over both transports, G6 against a real PostgreSQL)."""

from __future__ import annotations

import json
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from ..support import EXAMPLE, Repo, git, run_release, write_config

G5: list[dict[str, object]] = [
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
G6_DEMO: dict[str, object] = {
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


def deployed(tmp_path: Path, transport: dict[str, object], checks: list[Any], repo: Repo | None = None) -> tuple[Path, Path]:
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


# ----------------------------------------------------------------------------- attacks from a check


_READ_ANCESTORS = """
import os
pid, seen = os.getpid(), []
while pid > 1:
    try:
        seen.append(open(f"/proc/{pid}/environ", "rb").read())
        pid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    except OSError:
        break
blob = b"\\n".join(seen)
print("ancestors", len(seen), "LEAK" if b"NotForTheApp77" in blob else "clean")
"""


def test_a_check_cannot_read_the_dsn_from_its_ancestors_environment(tmp_path: Path) -> None:
    """Finding 6: on a local target a check read the DSN from /proc/<parent>/environ."""
    checks = [
        {"kind": "command", "name": "snoop", "argv": ["{python}", "-c", _READ_ANCESTORS], "expect_output": "clean"},
        {**G6_DEMO, "dsn_env": "APP_HIDDEN_DSN"},
    ]
    cfg, _ = deployed(tmp_path, {}, checks)
    secret = "postgresql://ro:NotForTheApp77@127.0.0.1:1/app"
    cp = smoke(cfg, env={"APP_HIDDEN_DSN": secret, "PGPASSWORD": "NotForTheApp77"})
    res = json.loads(cp.stdout)
    snoop = next(c for c in res["checks"] if c["name"] == "snoop")
    assert snoop["status"] == "passed", snoop["detail"]
    assert "ancestors" in snoop["detail"] and int(snoop["detail"].split()[1]) >= 3, "it did read the agent's and the CLI's environment"


def test_fifo_left_by_a_check_does_not_block_verify_and_is_drift(tmp_path: Path) -> None:
    """Finding 13: a FIFO in the release made the final verify block forever."""
    checks = [{"kind": "command", "name": "fifo", "argv": ["{python}", "-c", "import os; os.mkfifo('{target}/cutter_agent/trap')"]}]
    cfg, target = deployed(tmp_path, {}, checks)
    cp = run_release("--config", cfg, "--json", "smoke", env=None)
    assert cp.returncode == 1
    res = json.loads(cp.stdout)
    tree = next(c for c in res["checks"] if c["name"] == "tree-unchanged")
    assert tree["status"] == "failed" and "cutter_agent/trap" in tree["detail"]
    v = run_release("--config", cfg, "--json", "verify")
    assert v.returncode == 1 and "cutter_agent/trap" in json.loads(v.stdout)["special"]


def test_a_folder_the_app_makes_in_its_release_is_drift_that_names_the_shared_path(tmp_path: Path) -> None:
    """Flask's tutorial app (flaskr) makes `instance/` in its release when its tests run: the
    smoke fails (the release is no longer what was shipped) and says the way out, a shared
    path."""
    make = "import os; os.makedirs('{target}/instance'); open('{target}/instance/app.sqlite', 'w').write('x')"
    cfg, _ = deployed(tmp_path, {}, [{"kind": "command", "name": "writes", "argv": ["{python}", "-c", make]}])
    cp = smoke(cfg)
    assert cp.returncode == 1
    tree = next(c for c in json.loads(cp.stdout)["checks"] if c["name"] == "tree-unchanged")
    assert tree["status"] == "failed" and 'target.shared = ["instance"]' in tree["detail"], tree["detail"]


def test_a_session_leader_child_cannot_outlive_its_timeout(tmp_path: Path) -> None:
    """Finding 13: a check whose child starts its own session kept stdout open past the timeout."""
    daemon = (
        "import os, subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], start_new_session=True)\n"
        "print('started a daemon', flush=True)\n"
    )
    hang = "import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', 'import os, time; os.setsid(); time.sleep(120)'])\ntime.sleep(120)\n"
    checks = [
        {"kind": "command", "name": "daemon", "argv": ["{python}", "-c", daemon], "expect_output": "started", "timeout": 20},
        {"kind": "command", "name": "hang", "argv": ["{python}", "-c", hang], "timeout": 2},
    ]
    cfg, _ = deployed(tmp_path, {}, checks)
    import time as _time

    t0 = _time.monotonic()
    cp = smoke(cfg)
    took = _time.monotonic() - t0
    res = json.loads(cp.stdout)
    by = {c["name"]: c for c in res["checks"]}
    assert by["daemon"]["status"] == "passed" and by["daemon"]["duration"] < 10, "a finished check does not wait for its daemon"
    assert by["hang"]["status"] == "timeout" and by["hang"]["duration"] < 10
    assert took < 40
    import subprocess as sp

    left = sp.run(["pgrep", "-f", "time.sleep\\(120\\)"], capture_output=True, text=True).stdout.split()
    assert not left, f"processes outlived the smoke: {left}"


def test_ansi_colour_in_a_passing_check_keeps_junit_valid(tmp_path: Path) -> None:
    from xml.etree import ElementTree as ET

    checks = [
        {"kind": "command", "name": "colour", "argv": ["{python}", "-c", "print('\\x1b[32mgreen\\x1b[0m ok \\x07\\x1b]0;title\\x07')"], "expect_output": "ok"}
    ]
    cfg, _ = deployed(tmp_path, {}, checks)
    cp = smoke(cfg)
    assert cp.returncode == 0, cp.stderr
    report = Path(json.loads(cp.stdout)["report"])
    root = ET.parse(report / "junit.xml").getroot()
    text = "".join(root.itertext())
    assert "green ok" in text and "\x1b" not in text


def test_a_check_editing_the_deploy_manifest_is_drift_and_does_not_disable_rollback(tmp_path: Path) -> None:
    """Finding 16: a smoke check flipped pre_existed in DEPLOY-MANIFEST.txt to disable rollback."""
    flip = "p = '{target}/DEPLOY-MANIFEST.txt'; s = open(p).read().replace('pre_existed: false', 'pre_existed: true'); open(p, 'w').write(s)"
    checks = [{"kind": "command", "name": "flip", "argv": ["{python}", "-c", flip]}]
    cfg, target = deployed(tmp_path, {}, checks)
    cp = smoke(cfg)
    assert cp.returncode == 1
    tree = next(c for c in json.loads(cp.stdout)["checks"] if c["name"] == "tree-unchanged")
    assert tree["status"] == "failed" and "DEPLOY-MANIFEST" in tree["detail"]
    assert "pre_existed: true" in (target / "DEPLOY-MANIFEST.txt").read_text()
    rb = run_release("--config", cfg, "rollback")
    assert rb.returncode == 0, rb.stderr
    assert "drift" in rb.stdout and not target.exists()


def test_test_tools_caches_go_to_the_scratch_folder_not_into_the_release(tmp_path: Path) -> None:
    """An app's own suite run in the release folder: hypothesis, coverage, mypy and ruff write
    their caches where they run unless told otherwise (attrs 24.2.0's suite left
    .hypothesis/ in the release, and the tree check failed). Each check mimics its tool: it
    writes where the tool's variable points, else where the tool would by default."""
    writers = {"HYPOTHESIS_STORAGE_DIRECTORY": ".hypothesis", "COVERAGE_FILE": ".coverage", "MYPY_CACHE_DIR": ".mypy_cache", "RUFF_CACHE_DIR": ".ruff_cache"}
    code = (
        "import os, pathlib\n"
        f"for var, default in {writers!r}.items():\n"
        "    p = pathlib.Path(os.environ.get(var, default))\n"
        "    assert 'release-smoke-' in str(p), (var, p)\n"
        "    (p / 'db' if var != 'COVERAGE_FILE' else p).parent.mkdir(parents=True, exist_ok=True)\n"
        "    (p / 'db' if var != 'COVERAGE_FILE' else p).write_text('cache')\n"
        "print('caches written')\n"
    )
    checks = [{"kind": "command", "name": "caches", "argv": ["{python}", "-c", code], "expect_output": "caches written"}]
    cfg, target = deployed(tmp_path, {}, checks)
    cp = smoke(cfg)
    res = json.loads(cp.stdout)
    assert cp.returncode == 0, [(c["name"], c["detail"][-300:]) for c in res["checks"] if c["status"] != "passed"]
    assert not [p for p in target.iterdir() if p.name in writers.values()]


def test_compileall_takes_paths_and_an_exclude_for_fixtures_that_are_not_python(tmp_path: Path) -> None:
    """black 24.10.0 ships test cases that are deliberately invalid Python: compileall over
    the whole release fails on them. `exclude` (compileall's -x) and `paths` leave them out;
    the failed run shows the end of compileall's words under its row."""
    repo = example_repo(tmp_path / "iu-cutter")
    repo.write("tests/data/cases/broken_on_purpose.py", "def f(:\n")
    repo.commit("a test case that is not Python")
    cfg, _ = deployed(
        tmp_path,
        {},
        [
            {"kind": "compileall", "name": "whole"},
            {"kind": "compileall", "name": "excluded", "exclude": "/tests/data/"},
            {"kind": "compileall", "name": "app-only", "paths": ["cutter_agent", "tests/test_cli.py"]},
            {"kind": "compileall", "name": "typo", "paths": ["cutter_agnet"]},
        ],
        repo,
    )
    cp = run_release("--config", cfg, "smoke")
    assert cp.returncode == 1
    names = ("whole", "excluded", "app-only", "typo")
    rows = {line.split()[0]: line.split()[2] for line in cp.stdout.splitlines() if line.split() and line.split()[0] in names}
    # compileall itself passes a path that does not exist: the check does not
    assert rows == {"whole": "FAILED", "excluded": "PASSED", "app-only": "PASSED", "typo": "FAILED"}, cp.stdout
    assert "not in the release: cutter_agnet" in cp.stdout
    assert "broken_on_purpose.py" in cp.stdout, "the failure's own words are shown under its row"


@pytest.mark.parametrize(
    ("keys", "why"),
    [({"paths": ["../etc"]}, "inside the release"), ({"paths": ["/etc"]}, "inside the release"), ({"exclude": "(("}, "not a regular expression")],
)
def test_compileall_options_are_checked_before_anything(tmp_path: Path, keys: dict[str, object], why: str) -> None:
    cfg = write_config(tmp_path / "release.toml", tmp_path, checks=[{"kind": "compileall", **keys}])
    cp = run_release("--config", cfg, "smoke")
    assert cp.returncode == 2 and why in cp.stderr, cp.stderr
