"""The shared OpenSSH connection of a run: one authenticated connection per host, reused by
every call of every stage (ControlMaster/ControlPersist), its socket in a private 0700
folder; the run's ssh configuration (the operator's files first, then this tool's time
limits); at exit each master is told to stop and the folder is removed.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import re
import threading
from typing import TYPE_CHECKING

from .. import proc
from ..errors import ReleaseError
from ..redact import redact

if TYPE_CHECKING:
    import subprocess

# always: a prompt would hang the run; a pty (an operator's RequestTTY force) would mangle the agent's
# channel and hang it, and a RemoteCommand would replace the agent; the operator's ssh agent
# and X display never reach a host that runs the app's own code (their values on the command
# line win over any configuration file: an operator's ForwardAgent yes handed every target
# the agent's socket for the whole run)
SSH_OPTIONS = ("-o", "BatchMode=yes", "-T", "-o", "RemoteCommand=none", "-o", "ForwardAgent=no", "-o", "ForwardX11=no")
# every connection and session but an explicit ``-O forward``: the forwards of the operator's
# configuration (a RemoteForward opened a port on every target back into the controller's
# network; a LocalForward one here) are never opened. On the ``-O forward`` request itself it
# would clear the forward asked for, so that one call goes without it.
NO_FORWARDS = ("-o", "ClearAllForwardings=yes")
# the connection's time limits: the last block of the run's ssh configuration (``ssh_file``),
# so that a value of the operator's own, read first, wins (OpenSSH keeps the first it sees)
TIME_LIMITS = "Host *\n  ConnectTimeout 20\n  ServerAliveInterval 15\n  ServerAliveCountMax 4\n"
# what ssh reads when it is given no -F: the user's file, then the system's
DEFAULT_SSH_FILES = ("~/.ssh/config", "/etc/ssh/ssh_config")
# a path ``Include`` takes as it is: absolute or ~/, no pattern, space, quote or escape
_PLAIN_PATH = re.compile(r"(/|~/)[A-Za-z0-9._/+@,=:-]*")


class _Shared:
    """OpenSSH connection sharing for this run: one authenticated connection per host, reused
    by every call of every stage (ControlMaster/ControlPersist), its socket in a private 0700
    folder; at exit each master is told to stop and the folder is removed."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.folder = ""
        self.masters: set[tuple[str, ...]] = set()
        self.opening: dict[tuple[str, ...], threading.Thread] = {}
        self.failed: dict[tuple[str, ...], str] = {}
        self.openers: list[subprocess.Popen[bytes]] = []
        self.files: dict[str, str] = {}

    def _folder(self) -> str:
        """The run's private folder (mode 0700), made on first use; hold ``lock``."""
        if not self.folder:
            self.folder = socket_folder("release-ssh-", SOCKET_NAME)
            atexit.register(self.close)
        return self.folder

    def ssh_file(self, ssh_config: str) -> str:
        """The configuration every ssh of this run reads (``-F``), written once per run: the
        operator's own first (``target.ssh_config``, else ssh's default files), then this
        tool's time limits, which so apply only where theirs set none (an explicit
        ``ServerAliveInterval 0`` included). ssh itself resolves the order: no ``ssh -G``
        per host. A path with characters that ``Include`` would read as a pattern or split
        is reached through a link of our own."""
        with self.lock:
            if ssh_config in self.files:
                return self.files[ssh_config]
            folder = self._folder()
            n = len(self.files)
            includes: list[str] = []
            name = f"{folder}/ssh_config-{n}"
            try:
                for path in (ssh_config,) if ssh_config else DEFAULT_SSH_FILES:
                    if not _PLAIN_PATH.fullmatch(path):
                        link = f"{folder}/included-{n}-{len(includes)}"
                        os.symlink(os.path.abspath(path), link)
                        path = link
                    includes.append(f"Include {path}\n")
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write("# written by release for this run: your configuration first (its values win), then its time limits\n")
                    f.write("".join(includes) + TIME_LIMITS)
            except OSError as exc:
                raise _no_private_folder(exc) from None
            self.files[ssh_config] = name
            return name

    def options(self, base: list[str], host: str) -> list[str]:
        with self.lock:
            self._folder()
            self.masters.add((*base, host))
        return ["-o", "ControlMaster=auto", "-o", f"ControlPath={self.socket(base, host)}", "-o", "ControlPersist=60"]

    def socket(self, base: list[str], host: str) -> str:
        """One socket per host as named here (OpenSSH's %C hashes the resolved address, so
        two names for one machine would share a master and an opener would hang on it)."""
        return f"{self.folder}/" + hashlib.sha256("\0".join([*base, host]).encode()).hexdigest()[:SOCKET_NAME]

    def open_soon(self, base: list[str], host: str, gate: threading.Semaphore | None = None) -> None:
        """Start opening the connection in the background (``ssh -N``: it returns once the
        master is up, no remote command), at most ``gate`` at a time, while this run does
        other work; the host's first call waits for it (``wait``)."""
        key = (*base, host)

        def run() -> None:
            why = self._open(base, host, gate)
            if why:
                with self.lock:
                    self.failed[key] = why

        thread = threading.Thread(target=run, daemon=True)
        with self.lock:
            if key in self.opening:
                return
            self.opening[key] = thread
        thread.start()

    def open_now(self, base: list[str], host: str) -> str:
        return self._open(base, host, None)

    def _open(self, base: list[str], host: str, gate: threading.Semaphore | None) -> str:
        """'' when the connection is up (or was already), else OpenSSH's message."""
        import subprocess

        argv = [*base, *NO_FORWARDS, *self.options(base, host), "-N", "--", host]
        with gate or contextlib.nullcontext():
            if os.path.exists(self.socket(base, host)):  # a call opened it already (-N would wait on it)
                return ""
            child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=proc.clean_env())
            with self.lock:
                self.openers.append(child)
            try:
                _, err = child.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
                return "ssh: connect timed out"
        return "" if child.returncode == 0 else (redact(err.decode("utf-8", "replace").strip()) or f"ssh exited {child.returncode}")

    def wait(self, base: list[str], host: str) -> str:
        """Wait for a connection being opened in the background: '' or why it failed (told
        once: a later call makes its own connection)."""
        key = (*base, host)
        with self.lock:
            thread = self.opening.get(key)
        if thread is not None:
            thread.join()
        with self.lock:
            return self.failed.pop(key, "")

    @staticmethod
    def _stopped(path: str) -> bool:
        """Whether the master at ``path`` is stopped (or none listens there), asked through
        its socket (``sshmux``); False sends ``ssh -O exit`` instead."""
        from . import sshmux

        try:
            sshmux.terminate(path, timeout=2)  # a live master answers at once; a hung one gets ssh -O exit, in parallel
        except (OSError, sshmux.MuxError) as exc:
            proc.log.debug("ssh master at %s: %s; asking ssh -O exit", path, exc)
            return False
        return True

    def close(self) -> None:
        """Stop openers still connecting, tell every master to stop (through its socket;
        ``ssh -O exit``, all at once, for any that did not answer), then remove the socket
        folder."""
        import subprocess

        for child in self.openers:
            if child.poll() is None:
                child.kill()
                child.wait()
        self.openers.clear()
        stops = [
            subprocess.Popen(
                [*base, "-o", f"ControlPath={self.socket(base, host)}", "-O", "exit", "--", host],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=proc.clean_env(),
            )
            for *base, host in sorted(self.masters)
            if not self._stopped(self.socket(base, host))
        ]
        for p in stops:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        self.masters.clear()
        self.files.clear()
        if self.folder:
            import shutil

            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = ""


SHARED = _Shared()


# A unix socket's path must fit sun_path: 104 bytes on macOS and the BSDs (108 on Linux),
# and ssh first binds a ControlPath with a 17-byte temporary suffix.
SOCKET_PATH_MAX = 104 - 1 - 17
SOCKET_NAME = 16  # hex digits of a host's ControlPath name: 64 bits, distinct within a run


def socket_folder(prefix: str, name_room: int) -> str:
    """A new private folder (mode 0700) for this run's unix sockets, whose names take up to
    ``name_room`` bytes: under TMPDIR, or under /tmp when TMPDIR is too long a path for a
    socket (macOS's is close already); mkdtemp makes it safely in either."""
    import tempfile

    temp = tempfile.gettempdir()
    for base in dict.fromkeys((temp, "/tmp")):
        if len(os.fsencode(base)) + 1 + len(prefix) + 8 + 1 + name_room <= SOCKET_PATH_MAX and os.path.isdir(base):
            if base != temp:
                proc.log.debug("TMPDIR %s is too long for a socket path: the run's sockets go under %s", temp, base)
            try:
                return tempfile.mkdtemp(prefix=prefix, dir=base)
            except OSError as exc:
                raise _no_private_folder(exc) from None
    from ..errors import BlockedError

    raise BlockedError(
        f"TMPDIR ({temp}) is too long a path for this run's unix sockets, and there is no /tmp",
        hint="point TMPDIR at a folder with a shorter path; nothing was started",
    )


def _no_private_folder(exc: OSError) -> ReleaseError:
    from ..errors import BlockedError

    return BlockedError(
        f"cannot write this run's private ssh folder under {os.environ.get('TMPDIR') or '/tmp'}: {exc.strerror or exc}",
        hint="free space there, or point TMPDIR at a writable folder; nothing was sent to any host",
    )
