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
