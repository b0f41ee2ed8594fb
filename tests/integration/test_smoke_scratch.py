"""Smoke runs beside the release, never in it (#22 item 10): every check's working folder,
HOME and TMPDIR are a private scratch folder of that run, so test tools that write into
the folder they run in (pytest-benchmark's .benchmarks/, hypothesis, coverage) leave the
release as deployed, while relative paths in a check's arguments still resolve against the
release; tree-unchanged stays exactly as strict."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ..support import make_project, run_release, write_config

pytestmark = pytest.mark.slow

TESTS = """import os
from hypothesis import given, strategies as st

from demo_app.core import answer


def test_answer(benchmark):
    assert benchmark(answer) == 42


@given(st.integers())
def test_any_int(n):
    assert isinstance(n, int)


def test_runs_outside_the_release():
    here = os.getcwd()
    assert not os.path.exists(os.path.join(here, "DEPLOY-MANIFEST.txt")), here
"""
WHERE = "import os, sys; print('cwd', os.getcwd()); print('home', os.environ['HOME']); print('tmp', os.environ['TMPDIR']); print('arg', sys.argv[1])"


def test_test_tools_write_their_caches_beside_the_release(tmp_path: Path) -> None:
    repo = make_project(tmp_path / "app")
    text = (repo.path / "pyproject.toml").read_text()
    repo.write(
        "pyproject.toml",
        text + '[dependency-groups]\ntests = ["pytest>=8", "pytest-benchmark>=4", "hypothesis>=6", "coverage>=7"]\n',
    )
    repo.write("tests/test_core.py", TESTS)
    repo.write("scripts/where.py", f"{WHERE}\n")
    repo.commit("tests that write caches")
    root = tmp_path / "srv"
    cfg = write_config(
        tmp_path / "release.toml",
        repo.path,
        bundle={"artifacts": ["wheel"]},
        environment={"groups": ["tests"]},
        target={"root": str(root), "create_root": True},
        checks=[
            {"kind": "pytest", "args": ["tests"], "expect_passed": 3},
            {"kind": "command", "name": "coverage", "argv": ["{python}", "-m", "coverage", "run", "-m", "pytest", "-q", "tests/"]},
            {"kind": "command", "name": "where", "argv": ["{python}", "scripts/where.py", "tests/test_core.py"]},
        ],
    )
    assert run_release("--config", cfg, "bundle").returncode == 0
    d = run_release("--config", cfg, "--json", "deploy", "--no-plan")
    assert d.returncode == 0, d.stderr
    target = Path(json.loads(d.stdout)["target"])
    s = run_release("--config", cfg, "--json", "smoke")
    assert s.returncode == 0, s.stdout + s.stderr
    checks = {c["name"]: c for c in json.loads(s.stdout)["checks"]}
    assert {n: c["status"] for n, c in checks.items()} == {"pytest": "passed", "coverage": "passed", "where": "passed", "tree-unchanged": "passed"}
    said = dict(line.split(" ", 1) for line in checks["where"]["detail"].splitlines() if line.split(" ", 1)[0] in ("cwd", "home", "tmp", "arg"))
    scratch = Path(said["cwd"]).parent
    assert scratch.parent == target.parent and scratch.name.startswith(".release-smoke-"), said
    assert said["home"] == str(scratch / "home") and said["tmp"] == str(scratch / "tmp")
    assert said["arg"] == str(target / "tests" / "test_core.py"), "a relative path in a check's arguments is the release's"
    assert not [p for p in target.rglob("*") if p.name in (".benchmarks", ".hypothesis", ".coverage")]
    assert not [n for n in os.listdir(target.parent) if n.startswith(".release-smoke-")], "the scratch folder is removed"
    assert run_release("--config", cfg, "rollback").returncode == 0


def test_a_scratch_folder_left_by_a_killed_smoke_is_removed_by_the_next_run(tmp_path: Path) -> None:
    """A smoke takes no lock, so its scratch is removed by the next deploy or rollback only once
    the agent that made it is gone; a live one's is left alone."""
    repo = make_project(tmp_path / "app")
    root = tmp_path / "srv"
    cfg = write_config(tmp_path / "release.toml", repo.path, target={"root": str(root), "create_root": True})
    assert run_release("--config", cfg, "bundle").returncode == 0
    d = run_release("--config", cfg, "--json", "deploy", "--no-plan")
    assert d.returncode == 0, d.stderr
    deploy_id = json.loads(d.stdout)["deploy_id"]
    dead, live = root / f".release-smoke-{deploy_id}-dead", root / f".release-smoke-{deploy_id}-live"
    for folder, pid in ((dead, 2**22 + 12345), (live, os.getpid())):
        (folder / "work").mkdir(parents=True)
        (folder / "work" / ".benchmarks").write_text("x")
        (folder / ".release-partial").write_text(json.dumps({"deploy_id": deploy_id, "op": "smoke", "pid": pid, "time": 0}))
    r = run_release("--config", cfg, "--json", "rollback")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not dead.exists() and live.is_dir()
    assert json.loads(r.stdout)["removed_root"] == [], "the root holds a live smoke's scratch: it stays"
