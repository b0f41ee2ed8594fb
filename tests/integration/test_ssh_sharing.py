"""The run's shared OpenSSH connections are stopped at exit, through their control sockets
(OpenSSH's mux protocol), with ``ssh -O exit`` for a socket that does not answer as a
master does; nothing of the run's connections outlives it. Against the real test sshd."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from release.remote import sshmux
from release.remote.connection import _Shared

from ..servers import SshServer, free_port
from ..support import Repo, bundle, run_release, write_config


def _master(server: SshServer, path: Path) -> int:
    """Open a shared connection to the test sshd whose socket is ``path``: its master's pid."""
    base = ["ssh", "-F", str(server.config), "-o", "BatchMode=yes", "-o", f"ControlPath={path}"]
    subprocess.run([*base, "-o", "ControlMaster=yes", "-o", "ControlPersist=60", "-N", "--", server.host], check=True, timeout=30)
    check = subprocess.run([*base, "-O", "check", "--", server.host], capture_output=True, text=True, timeout=30)
    found = re.search(r"pid=(\d+)", check.stderr)
    assert found, check.stderr
    return int(found.group(1))


def _gone(pid: int, within: float = 10) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            if "zombie" in Path(f"/proc/{pid}/status").read_text().lower():
                return True  # exited, waiting for its parent (init, for a master) to reap it
        except FileNotFoundError:
            return True
        time.sleep(0.02)
    return False


def _names(pid: int, folder: Path) -> bool:
    """Whether a process's command line names ``folder`` (an ssh of the run started with
    TMPDIR there; the other worker's ssh processes come and go meanwhile)."""
    try:
        return os.fsencode(folder) in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_a_master_is_stopped_through_its_socket(sshd: SshServer, tmp_path: Path) -> None:
    path = tmp_path / "m"
    pid = _master(sshd, path)
    assert Path(f"/proc/{pid}").exists()
    assert sshmux.terminate(str(path)) is True
    assert _gone(pid), "the master still runs after it was told to stop"
    # nothing listens there any more: nothing to stop, no error
    assert sshmux.terminate(str(path)) is False


def _fake_master(path: Path, answer: bytes) -> threading.Thread:
    """A unix socket that says ``answer`` and then reads until the client leaves (or, for an
    answer cut mid-message, hangs up at once)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                conn.sendall(answer)
                if len(answer) < 8:
                    return
                conn.settimeout(5)
                try:
                    while conn.recv(4096):
                        pass
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def _msg(*fields: int) -> bytes:
    body = struct.pack(f">{len(fields)}I", *fields)
    return struct.pack(">I", len(body)) + body


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(b"SSH-2.0-not a mux socket\r\n", id="another-protocol"),
        pytest.param(_msg(sshmux.MUX_MSG_HELLO, 3), id="another-version"),
        pytest.param(_msg(sshmux.MUX_MSG_HELLO, 4) + _msg(0x80000002, 1, 0), id="permission-denied"),
        pytest.param(_msg(sshmux.MUX_MSG_HELLO, 4)[:6], id="cut-mid-message"),
    ],
)
def test_a_socket_that_does_not_answer_as_a_master_is_an_error_not_a_stop(tmp_path: Path, answer: bytes) -> None:
    path = tmp_path / "s"
    served = _fake_master(path, answer)
    with pytest.raises(sshmux.MuxError):
        sshmux.terminate(str(path), timeout=5)
    served.join(10)
    assert _Shared._stopped(str(tmp_path / "s2")) is True  # no socket at all: nothing to stop
    _fake_master(tmp_path / "s3", answer)
    assert _Shared._stopped(str(tmp_path / "s3")) is False  # the caller falls back to ssh -O exit


def _ours(cmd: str, ssh_config: Path) -> bool:
    """Whether an ssh command line is this test's: the run's configuration (``-F``) includes
    this test's own ssh_config (tests on the other worker run ssh with sockets under /tmp too)."""
    args = cmd.split()
    if "-F" not in args[:-1]:
        return False
    try:
        return f"Include {ssh_config}\n" in Path(args[args.index("-F") + 1]).read_text()
    except OSError:
        return False


def _watched_deploy(cfg: Path, temp: Path, ssh_config: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """Deploy with TMPDIR=``temp``, noting the run's ssh processes (their command lines name
    its socket folder, ``release-ssh-``, and their configuration this test's ssh_config) as
    they come."""
    seen: dict[str, str] = {}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for line in subprocess.run(["pgrep", "-af", "release-ssh-"], capture_output=True, text=True).stdout.splitlines():
                pid, _, cmd = line.partition(" ")
                if pid not in seen and _ours(cmd, ssh_config):
                    seen[pid] = cmd
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        res = run_release("--config", cfg, "deploy", "--no-plan", env={"TMPDIR": str(temp)})
    finally:
        stop.set()
        watcher.join()
    return res, seen


def _setup(sshd: SshServer, project: Repo, tmp_path: Path) -> Path:
    root = tmp_path / "srv"
    root.mkdir()
    cfg = write_config(
        tmp_path / "release.toml", project.path, target={"root": str(root), "create_root": False, "host": sshd.host, "ssh_config": str(sshd.config)}
    )
    bundle(cfg)
    return cfg


def test_a_remote_runs_connections_end_with_it(sshd: SshServer, project: Repo, tmp_path: Path) -> None:
    """A deploy over SSH shares one connection; once the command exits, its master is
    stopped (through its socket) and its private socket folder removed."""
    cfg = _setup(sshd, project, tmp_path)
    temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: the sockets go here
    try:
        before = set(subprocess.run(["pgrep", "-x", "ssh"], capture_output=True, text=True).stdout.split())
        res, seen = _watched_deploy(cfg, temp, sshd.config)
        assert res.returncode == 0, res.stderr
        ours = {pid: cmd for pid, cmd in seen.items() if str(temp) in cmd}
        assert ours, f"the run's ssh processes were seen while it ran, their sockets under TMPDIR: {seen}"
        assert not [c for c in ours.values() if "-O exit" in c], "the master was stopped through its socket, not by ssh -O exit"
        assert not list(temp.iterdir()), f"the run's private ssh folder is left: {list(temp.iterdir())}"
        left = [pid for pid in ours if not _gone(int(pid), within=5)]
        assert not left, f"ssh processes of the run outlive it: {[ours[p] for p in left]}"
        after = set(subprocess.run(["pgrep", "-x", "ssh"], capture_output=True, text=True).stdout.split())
        assert not [p for p in after - before if _names(int(p), temp) and not _gone(int(p), within=5)], (
            "no ssh of the run is left (an exited master may wait as a zombie for its new parent, init)"
        )
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def test_a_tmpdir_too_long_for_a_socket_path_still_deploys(sshd: SshServer, project: Repo, tmp_path: Path) -> None:
    """A socket path must fit 104 bytes (macOS) less ssh's temporary suffix: with a long
    TMPDIR the run's sockets go under /tmp instead (before: ssh refused the ControlPath and
    the deploy was reported as a lost connection, outcome unknown)."""
    cfg = _setup(sshd, project, tmp_path)
    temp = tmp_path / ("long-" + "t" * 60)
    temp.mkdir()
    res, seen = _watched_deploy(cfg, temp, sshd.config)
    assert res.returncode == 0, res.stderr
    assert seen and all(str(temp) not in cmd and "ControlPath=/tmp/release-ssh-" in cmd for cmd in seen.values() if "ControlPath" in cmd), seen
    assert not list(temp.iterdir())
    left = [pid for pid in seen if not _gone(int(pid), within=5)]
    assert not left, [seen[p] for p in left]
    assert not [c for c in seen.values() if "ControlPath=/tmp/release-ssh-" in c and Path(c.split("ControlPath=")[1].split()[0]).parent.exists()]


@pytest.mark.parametrize(
    "lines",
    [
        "RequestTTY force\n",  # a pty would turn the agent's answers' \n into \r\n and echo its input back
        "RemoteCommand sudo -i\n",  # ssh refuses a command line and a RemoteCommand together
    ],
    ids=["request-tty-force", "remote-command"],
)
def test_an_ssh_config_made_for_interactive_use_still_deploys(sshd: SshServer, project: Repo, tmp_path: Path, lines: str) -> None:
    """An operator's ssh_config written for logging in by hand (a TTY always, a command run on
    login) is read first, so its values would win: the run sets the two that would break
    the agent's channel on the command line (-T, RemoteCommand=none). Before, a forced TTY
    hung the deploy until the op's deadline (an hour), and a RemoteCommand failed it."""
    own = tmp_path / "ssh_config_own"
    own.write_text("Host *\n  " + lines + sshd.config.read_text())
    root = tmp_path / "srv"
    root.mkdir()
    cfg = write_config(tmp_path / "release.toml", project.path, target={"root": str(root), "create_root": False, "host": sshd.host, "ssh_config": str(own)})
    bundle(cfg)
    res = run_release("--config", cfg, "deploy", "--no-plan")
    assert res.returncode == 0, res.stderr[-2000:]
    assert run_release("--config", cfg, "rollback").returncode == 0
    assert [p.name for p in root.iterdir()] == [".release-journal"]  # the host's journal stays: the rest is gone


def test_an_operators_agent_and_forwards_never_reach_a_target(sshd: SshServer, project: Repo, tmp_path: Path) -> None:
    """An ssh_config with `ForwardAgent yes` (common, for git over ssh on servers), a
    RemoteForward and a LocalForward under `Host *`: the run's ssh gets ForwardAgent=no and
    (on every connection and session) ClearAllForwardings=yes on its command line. Before,
    the target got the operator's agent socket for the whole run (the app's tests and restart
    run there as that user) and a port on the target led back into the controller's network."""
    remote_port, local_port = free_port(), free_port()
    own = tmp_path / "ssh_config_own"
    own.write_text(
        f"Host *\n  ForwardAgent yes\n  RemoteForward 127.0.0.1:{remote_port} 127.0.0.1:22\n  LocalForward 127.0.0.1:{local_port} 127.0.0.1:22\n"
        + sshd.config.read_text()
    )
    agent = subprocess.run(["ssh-agent", "-s"], capture_output=True, text=True, check=True).stdout
    found = dict(re.findall(r"(SSH_AUTH_SOCK|SSH_AGENT_PID)=([^;]+);", agent))
    env = {**os.environ, **found}
    # what the agent on the target was started with (its parent's environment), and whether
    # the two forwarded ports accept a connection while the run's connection is up
    probe = (
        "import os, socket\n"
        "env = open('/proc/%d/environ' % os.getppid(), 'rb').read().split(b'\\0')\n"
        "print('agent:', [e for e in env if e.startswith(b'SSH_AUTH_SOCK')])\n"
        f"for port in ({remote_port}, {local_port}):\n"
        "    try:\n"
        "        socket.create_connection(('127.0.0.1', port), timeout=2).close(); print(port, 'open')\n"
        "    except OSError:\n"
        "        print(port, 'closed')\n"
    )
    root = tmp_path / "srv"
    root.mkdir()
    cfg = write_config(
        tmp_path / "release.toml",
        project.path,
        target={"root": str(root), "create_root": False, "host": sshd.host, "ssh_config": str(own)},
        checks=[{"kind": "command", "argv": ["{python}", "-c", probe]}],
    )
    try:
        bundle(cfg)
        assert run_release("--config", cfg, "deploy", "--no-plan", env=env).returncode == 0
        cp = run_release("--config", cfg, "--json", "smoke", env=env)
        assert cp.returncode == 0, cp.stdout[-2000:] + cp.stderr[-2000:]
        said = next(c["detail"] for c in json.loads(cp.stdout)["checks"] if c["kind"] == "command")
        assert "agent: []" in said and f"{remote_port} closed" in said and f"{local_port} closed" in said, said
        assert run_release("--config", cfg, "rollback", env=env).returncode == 0
    finally:
        os.kill(int(found["SSH_AGENT_PID"]), signal.SIGTERM)
