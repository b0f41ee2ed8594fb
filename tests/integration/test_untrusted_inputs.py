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
