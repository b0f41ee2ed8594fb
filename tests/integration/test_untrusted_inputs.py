"""Untrusted inputs through the real CLI: an inventory value meant for a shell never reaches
ssh (with the bastion ProxyCommand people write, %h would hand it to one), for any stage."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..support import Repo, git, run_release, write_config

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("stage", ["status", "plan", "deploy"])
def test_an_inventory_value_never_reaches_a_shell_through_proxycommand(tmp_path: Path, stage: str) -> None:
    app = tmp_path / "app"
    app.mkdir()
    git(app, "init", "-q", "-b", "main")
    Repo(app).write("app.py", "print('hi')\n")
    Repo(app).commit("app")
    marker = tmp_path / "pwned"
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text("Host *\n  ProxyCommand sh -c 'echo %h > /dev/null; exec nc %h %p'\n")
    inv = tmp_path / "hosts.ini"
    inv.write_text(f'[web]\nweb1 ansible_host="$(touch {marker})"\nweb2\n')
    cfg = write_config(tmp_path / "release.toml", app, target={"inventory": str(inv), "group": "web", "ssh_config": str(ssh_config)})
    cp = run_release("--config", cfg, stage)
    assert cp.returncode == 2, (cp.returncode, cp.stderr)
    assert "ansible_host of web1 is not a host name or an IP address" in cp.stderr, cp.stderr
    assert not marker.exists(), "the inventory's value ran in a shell"


@pytest.mark.parametrize("stage", ["bundle", "init"])
def test_a_pyproject_nested_past_the_toml_parser_is_refused_not_a_traceback(tmp_path: Path, stage: str) -> None:
    """A repository's (or the current folder's) pyproject.toml with arrays nested 3,000 deep:
    the standard library's parser recurses, so it was a RecursionError traceback; it is a
    usage error naming the file, and nothing is written."""
    from ..support import make_project

    repo = make_project(tmp_path / "app")
    text = (repo.path / "pyproject.toml").read_text()
    repo.write("pyproject.toml", text + "\n[tool.deep]\nx = " + "[" * 3000 + "]" * 3000 + "\n")
    repo.commit("deep")
    if stage == "bundle":
        cfg = write_config(tmp_path / "release.toml", repo.path)
        cp = run_release("--config", cfg, "bundle")
        assert not (tmp_path / "bundles").exists() or not list((tmp_path / "bundles").glob("*.tar.gz"))
    else:
        cp = run_release("init", cwd=repo.path)
        assert not (repo.path / "release.toml").exists()
    assert cp.returncode == 2 and "nests arrays or tables deeper than the TOML parser can follow" in cp.stderr, cp.stderr[-2000:]
    assert "Traceback" not in cp.stderr


# what a lying host's interpreter answers: the agent's envelope, with results that are not its
LIES = {
    "empty": '{"ok": true, "result": {}}',
    "wrong types": '{"ok": true, "result": {"target": 1, "files": "all", "tree_sha256": null, "manifest": [], "releases": [{"path": 5}],'
    ' "root": "/", "lock": null, "entries": "x", "leftovers": [], "current": "none", "previous": null, "journal_skipped_lines": true}}',
}


@pytest.mark.parametrize("lie", sorted(LIES))
def test_a_host_whose_answers_lie_is_named_never_a_traceback_and_no_deploy_is_taken_as_done(tmp_path: Path, project: Repo, sshd: object, lie: str) -> None:
    """The target's interpreter answers every op with the agent's envelope around a result
    that is not the agent's. It was a KeyError traceback for status, smoke, promote,
    rollback, verify and prune, and a deploy recorded as done (files 0, no tree); now every
    stage names the host and what its answer lacks, a deploy's outcome is unknown (exit 1,
    settled with the host by the next run), and the plan is not passed on facts it never got."""
    from ..servers import SshServer

    assert isinstance(sshd, SshServer)
    liar = tmp_path / "python-liar"
    liar.write_text(f"#!/bin/sh\ncat > /dev/null\necho '{LIES[lie]}'\n")
    liar.chmod(0o755)
    root = tmp_path / "srv"
    root.mkdir()
    target = {"root": str(root), "strategy": "timestamped", "host": sshd.host, "ssh_config": str(sshd.config), "python": str(liar)}
    cfg = write_config(tmp_path / "release.toml", project.path, target=target, checks=[{"kind": "import", "modules": ["demo_app"]}])
    assert run_release("--config", cfg, "bundle").returncode == 0
    said = {}
    for stage in (["status"], ["plan"], ["deploy", "--no-plan"], ["rollback", "--to-previous"], ["prune", "--keep", "1"]):
        cp = run_release("--config", cfg, *stage)
        said[stage[0]] = cp
        assert "Traceback" not in cp.stderr and cp.returncode != 0, (stage, cp.returncode, cp.stderr[-2000:])
        assert "testhost" in cp.stderr and "its answer is not the agent's" in cp.stderr, (stage, cp.stderr[-2000:])
    assert "outcome unknown" in said["deploy"].stderr
    records = list((tmp_path / ".release" / "deploys").glob("*.json"))
    assert records and all('"status": "deployed"' not in r.read_text() for r in records), "a deploy the host never described is never taken as done"
    assert [p.name for p in root.iterdir()] == [], "nothing was written on the host (its interpreter never ran the agent)"
