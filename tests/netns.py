"""Real hosts on one machine: each test host is a network namespace (a veth on a private
bridge, its own address) running its own sshd inside its own mount namespace, where a
private folder is bind-mounted at the shared target root: every host has its own view of
the same path. Needs root (the tests and CI run as root). Everything made here (bridge,
links, namespaces, processes) is removed by ``close``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


@dataclass
class NsHost:
    name: str
    ns: str
    address: str
    folder: Path  # what the host sees at the target root (from the controller: its private folder)
    sshd: bool = True
    tmpfs: str = ""  # a size ("512k"): the target root is a tiny tmpfs instead of the folder
    proc: subprocess.Popen[bytes] | None = None

    def pids(self) -> list[int]:
        return [int(p) for p in _ip("netns", "pids", self.ns, check=False).stdout.split()]

    def kill(self) -> None:
        """Kill every process of this host (its sshd, sessions and agents): the host goes down."""
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None:
            self.proc.wait(timeout=10)
            self.proc = None


@dataclass
class NsFleet:
    base: Path
    root: Path  # the target root path, the same on every host
    hosts: list[NsHost] = field(default_factory=list)
    tag: str = field(default_factory=lambda: secrets.token_hex(2))
    subnet: str = ""
    ssh_config: Path | None = None
    # the bench's hosts do not run this machine's login files (a developer's ~/.bashrc, say
    # `pyenv init`, would run on every SSH command of every host): a fresh host's are empty
    clean_login: bool = False

    @property
    def bridge(self) -> str:
        return f"rlb{self.tag}"

    def start(self, count: int, *, no_sshd: tuple[int, ...] = (), tmpfs: dict[int, str] | None = None) -> None:
        tmpfs = tmpfs or {}
        self.root.mkdir(parents=True, exist_ok=True)
        third = int(self.tag, 16) % 200 + 20
        self.subnet = f"10.233.{third}"
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        keys = self.base / "keys"
        keys.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "client")], check=True)
        known = []
        for i in range(count):
            host = NsHost(f"h{i}", f"rln{self.tag}{i}", f"{self.subnet}.{10 + i}", self.base / f"host{i}", sshd=i not in no_sshd, tmpfs=tmpfs.get(i, ""))
            host.folder.mkdir(parents=True, exist_ok=True)
            self.hosts.append(host)
            _ip("netns", "add", host.ns)
            veth, peer = f"rlv{self.tag}{i}", f"rlp{self.tag}{i}"
            _ip("link", "add", veth, "type", "veth", "peer", "name", peer)
            _ip("link", "set", veth, "master", self.bridge, "up")
            _ip("link", "set", peer, "netns", host.ns)
            _ip("-n", host.ns, "addr", "add", f"{host.address}/24", "dev", peer)
            _ip("-n", host.ns, "link", "set", peer, "up")
            _ip("-n", host.ns, "link", "set", "lo", "up")
            hk = keys / f"host{i}"
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(hk)], check=True)
            known.append(f"{host.address} {' '.join(hk.with_suffix('.pub').read_text().split()[:2])}")
            (host.folder.parent / f"sshd{i}.conf").write_text(
                f"ListenAddress {host.address}\nPort 22\nHostKey {hk}\nPidFile none\nAuthorizedKeysFile {keys / 'client.pub'}\n"
                "StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
                "PermitRootLogin prohibit-password\nLogLevel ERROR\nAcceptEnv RELEASE_TEST_*\nMaxStartups 50:30:100\nSubsystem sftp internal-sftp\n"
            )
            if host.sshd:
                self.start_sshd(host)
        (keys / "known_hosts").write_text("\n".join(known) + "\n")
        lines = []
        for h in self.hosts:
            lines.append(
                f"Host {h.name}\n  HostName {h.address}\n  User root\n  IdentityFile {keys / 'client'}\n  IdentitiesOnly yes\n"
                f"  UserKnownHostsFile {keys / 'known_hosts'}\n  StrictHostKeyChecking yes\n  LogLevel ERROR\n  ConnectTimeout 5\n  SendEnv RELEASE_TEST_*\n"
            )
        self.ssh_config = self.base / "ssh_config"
        self.ssh_config.write_text("".join(lines))
        for h in self.hosts:
            if h.sshd:
                self.wait(h)

    def start_sshd(self, host: NsHost) -> None:
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        mount = f"mount -t tmpfs -o size={host.tmpfs} tmpfs {self.root}" if host.tmpfs else f"mount --bind {host.folder} {self.root}"
        conf = host.folder.parent / f"sshd{host.name[1:]}.conf"
        script = f"hostname {host.name} && mount --make-rprivate / && {mount} && "
        if self.clean_login:
            home = Path.home()
            script += "".join(f"mount --bind /dev/null {home / f} && " for f in (".bashrc", ".bash_profile", ".bash_login", ".profile") if (home / f).is_file())
        script += f"exec {sshd} -D -e -f {conf}"
        log = (host.folder.parent / f"sshd{host.name[1:]}.log").open("ab")
        host.proc = subprocess.Popen(["ip", "netns", "exec", host.ns, "unshare", "-m", "-u", "sh", "-c", script], stdout=log, stderr=subprocess.STDOUT)

    def wait(self, host: NsHost, timeout: float = 20) -> None:
        end = time.time() + timeout
        while time.time() < end:
            try:
                with socket.create_connection((host.address, 22), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"sshd of {host.name} did not start: " + (host.folder.parent / f"sshd{host.name[1:]}.log").read_text()[-500:])

    def close(self) -> None:
        for h in self.hosts:
            h.kill()
            _ip("netns", "del", h.ns, check=False)
        for i in range(len(self.hosts)):
            _ip("link", "del", f"rlv{self.tag}{i}", check=False)
        _ip("link", "del", self.bridge, check=False)


def available() -> str:
    """'' when namespaces, bridges and sshd can be used here, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not shutil.which("ip") or not shutil.which("unshare"):
        return "iproute2 and util-linux are needed (apt-get install iproute2)"
    if not (shutil.which("sshd") or os.path.exists("/usr/sbin/sshd")):
        return "openssh-server is not installed"
    probe = f"rlprobe{secrets.token_hex(2)}"
    cp = _ip("netns", "add", probe, check=False)
    _ip("netns", "del", probe, check=False)
    return "" if cp.returncode == 0 else f"ip netns add failed: {cp.stderr.strip()}"
