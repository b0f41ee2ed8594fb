"""The options and configuration this tool gives every ssh, against a real OpenSSH client
(``ssh -G`` resolves a configuration without connecting)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from release.remote import connection, transport


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


def test_an_explicit_zero_keepalive_of_the_operators_is_kept(tmp_path: Path) -> None:
    resolved = _resolved(_argv(tmp_path, "Host *\n  ServerAliveInterval 0\n", "h"), "h")
    assert resolved["serveraliveinterval"] == "0"  # theirs: no keepalive, as they asked
    assert resolved["connecttimeout"] == "20"


def test_no_ssh_config_reads_the_users_and_the_systems_files_first(tmp_path: Path) -> None:
    """Without target.ssh_config the run's file includes ~/.ssh/config, then the system's
    file, as a plain ``ssh`` reads them; ours come last."""
    argv = transport.SshTransport("h", "python3", "", share=False).ssh_argv()
    text = Path(argv[argv.index("-F") + 1]).read_text()
    assert text.index("Include ~/.ssh/config") < text.index("Include /etc/ssh/ssh_config") < text.index("ConnectTimeout 20")
    ours = subprocess.run([*argv, "-G", "--", "h"], capture_output=True, text=True, check=True).stdout.splitlines()
    plain = subprocess.run(["ssh", "-G", "--", "h"], capture_output=True, text=True, check=True).stdout.splitlines()
    ours_only = (
        "batchmode ",
        "connecttimeout ",
        "serveralive",
        "requesttty ",
        "remotecommand ",
        "forwardagent ",
        "forwardx11 ",
        "clearallforwardings ",
    )  # what this tool sets, on purpose
    assert [ln for ln in ours if not ln.startswith(ours_only)] == [ln for ln in plain if not ln.startswith(ours_only)]
    if "SendEnv LANG" in Path("/etc/ssh/ssh_config").read_text():  # Debian's: the system file was read in both
        assert "sendenv LANG" in plain


def test_an_odd_ssh_config_path_is_included_whole_and_no_glob_picks_a_neighbour(tmp_path: Path) -> None:
    """A path with a space, a pattern and a quote reaches ssh as that one file: ``Include``
    would split it and glob it, so a link of the run's own stands in for it."""
    folder = tmp_path / "my conf [x]"
    folder.mkdir()
    theirs = folder / 'ssh "config"*'
    theirs.write_text("Host h\n  ConnectTimeout 7\n")
    (folder / "x").write_text("Host h\n  ConnectTimeout 99\n")  # what the pattern [x] would pick
    argv = transport.SshTransport("h", "python3", str(theirs), share=False).ssh_argv()
    assert _resolved(argv, "h")["connecttimeout"] == "7"


def test_a_config_ssh_cannot_read_is_reported_by_the_call(tmp_path: Path) -> None:
    argv = _argv(tmp_path, "Host *\n  NoSuchOption yes\n", "h")
    cp = subprocess.run([*argv, "-G", "--", "h"], capture_output=True, text=True)
    assert cp.returncode != 0 and "bad configuration option: nosuchoption" in cp.stderr.lower()


def test_an_ssh_config_others_can_write_is_refused_before_any_ssh(tmp_path: Path) -> None:
    """A ProxyCommand another user writes into target.ssh_config would run as the operator:
    refused (exit 2) naming the file, as OpenSSH refuses such a ~/.ssh/config."""
    import os

    from release.config import Config
    from release.errors import ConfigError

    cfg_file = tmp_path / "ssh_config"
    cfg_file.write_text("Host *\n  ConnectTimeout 3\n")
    base = Config(tmp_path, tmp_path, "app", tmp_path, "", "", "", tmp_path, (), "h", "/srv", "d", "side-by-side", "python3", str(cfg_file), False, "", ())
    for mode in (0o666, 0o620):
        cfg_file.chmod(mode)
        with pytest.raises(ConfigError) as err:
            transport.for_config(base)
        assert str(cfg_file) in err.value.message and err.value.exit_code == 2 and "chmod go-w" in err.value.hint
    cfg_file.chmod(0o644)
    os.chown(cfg_file, 65534, -1)  # nobody's file
    with pytest.raises(ConfigError):
        transport.for_config(base)
    os.chown(cfg_file, os.getuid(), -1)
    assert isinstance(transport.for_config(base), transport.SshTransport)
    with pytest.raises(ConfigError, match="not found"):
        transport.for_config(base._replace(ssh_config=str(tmp_path / "missing")))


def test_inventory_values_cannot_smuggle_ssh_options_or_commands(tmp_path: Path) -> None:
    """An inventory an attacker wrote: ``ansible_host`` carrying a second option (on the same
    line and after a newline), ``ansible_user`` shaped as an option. The argv the fleet builds
    for it, resolved by ``ssh -G`` and run for real, never runs the planted command."""
    from release.config import Config
    from release.fleet import stages as fleet
    from release.fleet.inventory import Host

    planted = tmp_path / "pwned"
    cmd = f"ProxyCommand=touch {planted}"
    cfg = tmp_path / "ssh_config"
    cfg.write_text("Host *\n  ConnectTimeout 2\n")
    base = Config(tmp_path, tmp_path, "app", tmp_path, "", "", "", tmp_path, (), "h", "/srv", "d", "side-by-side", "python3", str(cfg), False, "", ())
    for host in (Host("h1", address=f"127.0.0.1 {cmd}"), Host("h2", address=f"127.0.0.1\n{cmd}"), Host("h3", address="127.0.0.1", user=f"-o{cmd}")):
        hcfg = fleet.host_config(base, host)
        t = transport.SshTransport(hcfg.connect_to or hcfg.host, "python3", hcfg.ssh_config, hcfg.ssh_options, share=False, label=hcfg.host)
        argv = t.ssh_argv()
        resolved = subprocess.run([*argv, "-G", "--", t.host], capture_output=True, text=True)
        assert "proxycommand touch" not in resolved.stdout.lower()
        run = subprocess.run([*argv, "--", t.host, "true"], capture_output=True, text=True, timeout=30)
        assert run.returncode == 255, run
        assert not planted.exists(), f"{host}: the planted command ran"


def test_no_room_for_the_runs_private_ssh_folder_is_blocked_before_any_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's ssh folder cannot be made (a full temp filesystem: no inode left): exit 3
    naming the place and the way out, not a traceback; nothing ran."""
    import tempfile

    from release.errors import BlockedError

    from ..support import need

    full = Path(tempfile.mkdtemp(prefix="full", dir="/tmp"))  # short enough to hold the run's sockets
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,nr_inodes=1", "tmpfs", str(full)], capture_output=True)
    need(mounted.returncode == 0, "mounting a tmpfs needs root")
    try:
        monkeypatch.setattr(tempfile, "tempdir", str(full))
        shared = connection._Shared()
        with pytest.raises(BlockedError) as err:
            shared.ssh_file("")
        assert "private ssh folder" in err.value.message and "TMPDIR" in err.value.hint and err.value.exit_code == 3
        assert shared.folder == "" and shared.files == {}
    finally:
        subprocess.run(["umount", str(full)], check=True)
        full.rmdir()
