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
