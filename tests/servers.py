"""A real OpenSSH server for the tests, on 127.0.0.1 (PostgreSQL comes from ``release.db.pgdemo``).

Each starts in a temp folder with keys/credentials made here. When a server cannot be
started the test is skipped locally, and fails under CI=true (see conftest.need).
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


@dataclass
class SshServer:
    host: str
    config: Path
    proc: subprocess.Popen[bytes]
    folder: Path


def find_sshd() -> str | None:
    return shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd",) if os.path.exists(p)), None)


def start_sshd(folder: Path, max_startups: str = "50:30:100") -> tuple[SshServer | None, str]:
    sshd = find_sshd()
    if not sshd:
        return None, "openssh-server is not installed (apt-get install openssh-server)"
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name)], check=True)
    (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
    os.chmod(folder / "authorized_keys", 0o600)
    port = free_port()
    cfg = folder / "sshd_config"
    cfg.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder / 'host_key'}\nPidFile {folder / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\nStrictModes no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\nLogLevel ERROR\n"
        f"MaxStartups {max_startups}\nMaxSessions 50\nAcceptEnv RELEASE_TEST_*\n"
    )
    os.makedirs("/run/sshd", exist_ok=True)
    log = (folder / "sshd.log").open("wb")
    proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    if not wait_port(port, proc):
        proc.kill()
        return None, "sshd did not start: " + (folder / "sshd.log").read_text()[-500:]
    host_pub = (folder / "host_key.pub").read_text().split()
    (folder / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    client = folder / "ssh_config"
    client.write_text(
        f"Host testhost\n  HostName 127.0.0.1\n  Port {port}\n  User {getpass.getuser()}\n"
        f"  IdentityFile {folder / 'client_key'}\n  IdentitiesOnly yes\n  UserKnownHostsFile {folder / 'known_hosts'}\n"
        "  StrictHostKeyChecking yes\n  LogLevel ERROR\n  SendEnv RELEASE_TEST_*\n"
    )
    probe = subprocess.run(["ssh", "-F", str(client), "-o", "BatchMode=yes", "testhost", "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        proc.kill()
        return None, "ssh to the test sshd failed: " + probe.stderr
    return SshServer("testhost", client, proc, folder), ""
