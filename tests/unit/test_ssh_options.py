"""The options this tool puts on every ssh command line, against a real OpenSSH client
(``ssh -G`` resolves a configuration without connecting)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from release import transport


def _argv(tmp_path: Path, config: str, host: str) -> list[str]:
    cfg = tmp_path / "ssh_config"
    cfg.write_text(config)
    return transport.SshTransport(host, "python3", str(cfg), share=False).ssh_argv()


def _resolved(argv: list[str], host: str) -> dict[str, str]:
    out = subprocess.run([*argv, "-G", "--", host], capture_output=True, text=True, check=True).stdout
    return dict(line.partition(" ")[::2] for line in out.splitlines())


def test_the_operators_own_time_limits_win_over_the_tools_defaults(tmp_path: Path) -> None:
    config = "Host slow\n  ConnectTimeout 3\nHost quiet\n  ServerAliveInterval 60\n  ServerAliveCountMax 9\nHost *\n  BatchMode no\n"
    slow = _resolved(_argv(tmp_path, config, "slow"), "slow")
    assert slow["connecttimeout"] == "3"  # theirs, not our 20
    assert (slow["serveraliveinterval"], slow["serveralivecountmax"]) == ("15", "4")  # they set none: ours
    quiet = _resolved(_argv(tmp_path, config, "quiet"), "quiet")
    assert quiet["connecttimeout"] == "20"
    assert (quiet["serveraliveinterval"], quiet["serveralivecountmax"]) == ("60", "9")
    plain = _resolved(_argv(tmp_path, config, "plain"), "plain")
    assert (plain["connecttimeout"], plain["serveraliveinterval"], plain["serveralivecountmax"]) == ("20", "15", "4")
    for resolved in (slow, quiet, plain):
        assert resolved["batchmode"] == "yes"  # always, whatever the file says: no prompt hangs a run


def test_a_config_ssh_cannot_read_gets_every_default_and_the_call_reports_it(tmp_path: Path) -> None:
    argv = _argv(tmp_path, "Host *\n  NoSuchOption yes\n", "h")
    assert argv[-6:] == ["-o", "ConnectTimeout=20", "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"]
    cp = subprocess.run([*argv, "-G", "--", "h"], capture_output=True, text=True)
    assert cp.returncode != 0 and "bad configuration option: nosuchoption" in cp.stderr.lower()


def test_inventory_values_cannot_smuggle_ssh_options_or_commands(tmp_path: Path) -> None:
    """An inventory an attacker wrote: ``ansible_host`` carrying a second option (on the same
    line and after a newline), ``ansible_user`` shaped as an option. The argv the fleet builds
    for it, asked by ``ssh -G`` (as ``ssh_defaults`` asks) and run for real, never runs the
    planted command."""
    from release import fleet
    from release.config import Config
    from release.inventory import Host

    planted = tmp_path / "pwned"
    cmd = f"ProxyCommand=touch {planted}"
    cfg = tmp_path / "ssh_config"
    cfg.write_text("Host *\n  ConnectTimeout 2\n")
    base = Config(tmp_path, tmp_path, "app", tmp_path, "", "", "", tmp_path, (), "h", "/srv", "d", "side-by-side", "python3", str(cfg), False, "", ())
    for host in (Host("h1", address=f"127.0.0.1 {cmd}"), Host("h2", address=f"127.0.0.1\n{cmd}"), Host("h3", address="127.0.0.1", user=f"-o{cmd}")):
        hcfg = fleet.host_config(base, host)
        t = transport.SshTransport(hcfg.host, "python3", hcfg.ssh_config, hcfg.ssh_options, share=False)
        argv = t.ssh_argv()
        resolved = subprocess.run([*argv, "-G", "--", host.name], capture_output=True, text=True)
        assert "proxycommand touch" not in resolved.stdout.lower()
        run = subprocess.run([*argv, "--", host.name, "true"], capture_output=True, text=True, timeout=30)
        assert run.returncode == 255, run
        assert not planted.exists(), f"{host}: the planted command ran"
