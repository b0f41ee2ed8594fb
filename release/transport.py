"""One transport interface, two implementations: this machine, or an SSH host.

Both run the stdlib-only target agent (``release/agent/``) with the target's
interpreter: a small boot program on the command line, the agent's code ahead of the call's
data on stdin, so the target needs nothing installed but Python. SSH is the system OpenSSH
client in batch mode: the user's ssh_config (or ``target.ssh_config``), agent, jump hosts
and known_hosts apply, read first, then this tool's time limits (``_Shared.ssh_file``).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from . import proc
from .agent import jsonio
from .agent import ops as agent_ops
from .config import Config
from .errors import BlockedError, OutcomeUnknownError, ReleaseError, UnreachableError, from_exit_code
from .payload import agent_program  # what travels with every call: the boot program and the agent's code
from .redact import redact

if TYPE_CHECKING:  # subprocess and shlex are imported by the SSH paths that use them
    import subprocess

# the agent is stdlib only: isolated mode (no PYTHON* variables, no user site, no cwd on
# sys.path) and no site import, which also makes it start faster
AGENT_FLAGS = ("-I", "-S")
SSH_OPTIONS = ("-o", "BatchMode=yes")  # always: a prompt would hang the run
# the connection's time limits: the last block of the run's ssh configuration (``ssh_file``),
# so that a value of the operator's own, read first, wins (OpenSSH keeps the first it sees)
TIME_LIMITS = "Host *\n  ConnectTimeout 20\n  ServerAliveInterval 15\n  ServerAliveCountMax 4\n"
# what ssh reads when it is given no -F: the user's file, then the system's
DEFAULT_SSH_FILES = ("~/.ssh/config", "/etc/ssh/ssh_config")


# what travels with every call (the boot program, the agent's code) is ``payload``'s


class Transport(Protocol):
    label: str
    same_machine: bool  # the target can read the controller's files in place

    def agent(self, op: str, request: Mapping[str, object], *, stdin: BinaryIO | None = None, timeout: float | None = None) -> dict[str, Any]: ...

    def argv(self, op: str, request: Mapping[str, object]) -> list[str]: ...


class _Base:
    label = ""
    same_machine = False

    def __init__(self, python: str, deadline: float = 3600.0) -> None:
        self.python = python
        self.deadline = deadline  # target.op_timeout: no op waits on a target without end

    def argv(self, op: str, request: Mapping[str, object]) -> list[str]:
        raise NotImplementedError

    def agent(self, op: str, request: Mapping[str, object], *, stdin: BinaryIO | None = None, timeout: float | None = None) -> dict[str, Any]:
        timeout = self.deadline if timeout is None else timeout
        argv = self.argv(op, request)
        proc.log.debug("agent %s on %s", op, self.label)
        return self._answer(
            op,
            self._bounded(
                op,
                lambda: proc.run(
                    argv,
                    stdin=stdin,
                    prefix=agent_program()[1],
                    check=False,
                    timeout=timeout,
                    what=f"agent op {op} on {self.label}",
                    hint=f"install {argv[0]} or fix target.python / PATH",
                ),
            ),
        )

    def _bounded(self, op: str, ran: Callable[[], proc.Completed]) -> proc.Completed:
        """``ran()``, with an agent that printed past ``proc.MAX_OUTPUT`` (killed before its
        answer was read) as an error, or an unknown outcome for an op that changes the target."""
        try:
            return ran()
        except proc.OutputTooLarge as exc:
            if op in CHANGING_OPS:
                raise _unknown(op, self.label, exc.message, "") from None
            raise ReleaseError(f"target agent ({op}) on {self.label}: {exc.message}", hint="the target printed without end: inspect that host") from None
        except proc.Stopped as exc:
            if op in CHANGING_OPS:
                raise _unknown(op, self.label, exc.message, "") from None
            raise ReleaseError(f"target agent ({op}) on {self.label}: {exc.message}") from None
        except proc.TimedOut as exc:
            if op in CHANGING_OPS:
                raise _unknown(op, self.label, f"no answer within its deadline ({exc.message})", "") from None
            raise ReleaseError(
                f"target agent ({op}) on {self.label} gave no answer within its deadline",
                detail=exc.message,
                hint="inspect that host, or raise target.op_timeout",
            ) from None

    def _answer(self, op: str, cp: proc.Completed) -> dict[str, Any]:
        err = redact(cp.stderr.decode("utf-8", "replace").strip())
        lines = cp.stdout.decode("utf-8", "replace").strip().splitlines()
        try:  # a target's answer is untrusted: bounded in size (proc.MAX_OUTPUT) and depth
            answer = jsonio.loads_bounded(lines[-1], proc.MAX_OUTPUT) if lines else None
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise self._no_answer(op, cp.returncode, err)
        if not answer.get("ok"):
            detail = err
            if answer.get("traceback"):
                proc.log.debug("agent traceback on %s:\n%s", self.label, answer["traceback"])
                detail = (err + "\n" if err else "") + str(answer["traceback"])
            raise from_exit_code(
                int(answer.get("exit_code", 1)),
                str(answer.get("message", "")),
                hint=str(answer.get("hint", "")),
                detail=detail,
                kind=str(answer.get("kind") or ""),
            )
        result = answer.get("result")
        if not isinstance(result, dict):  # an answer that is not the agent's: never taken as done
            raise self._no_answer(op, cp.returncode, err or "its answer held no result")
        if err:
            result.setdefault("_log", err)
        return result

    def _no_answer(self, op: str, code: int, err: str) -> ReleaseError:
        if "Unknown option: -I" in err:  # Python 2 stops at the command line: it ran nothing
            return BlockedError(f"{self.python} on {self.label} is Python 2 (no -I option)", hint="set target.python to Python 3.8 or newer")
        if op in CHANGING_OPS:
            return _unknown(op, self.label, f"the target agent gave no answer (exit {code})", err)
        return ReleaseError(f"target agent ({op}) on {self.label} gave no answer (exit {code})", detail=err, hint=f"check that {self.python} runs there")


# OpenSSH's messages for a connection that never reached the remote command
NEVER_CONNECTED = (
    "ssh: connect to host",
    "Could not resolve hostname",
    "Permission denied",
    "Host key verification failed",
    "No route to host",
    "Connection refused",
    "banner exchange",
    "Bad configuration option",
    "Bad owner or permissions",
    "Too many authentication failures",
)

# ops that change the target: when their answer is lost, the outcome is unknown, not failed
# (the agent's op table says which)
CHANGING_OPS = agent_ops.CHANGING


def _unknown(op: str, label: str, why: str, err: str) -> OutcomeUnknownError:
    return OutcomeUnknownError(
        f"{op} on {label}: outcome unknown: {why}",
        detail=err,
        hint="the target may have finished it; the next deploy or rollback reconciles it with the target first (see `release status`)",
    )


class LocalTransport(_Base):
    label = "localhost"
    same_machine = True

    def argv(self, op: str, request: Mapping[str, object]) -> list[str]:
        return [self.python, *AGENT_FLAGS, "-c", agent_program()[0], op, json.dumps(request)]

    def agent(self, op: str, request: Mapping[str, object], *, stdin: BinaryIO | None = None, timeout: float | None = None) -> dict[str, Any]:
        from . import inprocess

        if stdin is None and inprocess.usable(self.python, op):  # no second interpreter start (see inprocess)
            proc.log.debug("agent %s on %s, in a forked child", op, self.label)
            deadline = self.deadline if timeout is None else timeout
            return self._answer(op, self._bounded(op, lambda: inprocess.run(op, request, deadline)))
        return super().agent(op, request, stdin=stdin, timeout=timeout)


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

        argv = [*base, *self.options(base, host), "-N", "--", host]
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
    from .errors import BlockedError

    raise BlockedError(
        f"TMPDIR ({temp}) is too long a path for this run's unix sockets, and there is no /tmp",
        hint="point TMPDIR at a folder with a shorter path; nothing was started",
    )


def _no_private_folder(exc: OSError) -> ReleaseError:
    from .errors import BlockedError

    return BlockedError(
        f"cannot write this run's private ssh folder under {os.environ.get('TMPDIR') or '/tmp'}: {exc.strerror or exc}",
        hint="free space there, or point TMPDIR at a writable folder; nothing was sent to any host",
    )


# a path ``Include`` takes as it is: absolute or ~/, no pattern, space, quote or escape
_PLAIN_PATH = re.compile(r"(/|~/)[A-Za-z0-9._/+@,=:-]*")


class SshTransport(_Base):
    def __init__(self, host: str, python: str, ssh_config: str = "", options: tuple[str, ...] = (), share: bool = True, deadline: float = 3600.0) -> None:
        super().__init__(python, deadline)
        self.host = host
        self.label = host
        self.ssh_config = ssh_config
        self.options = options
        self.share = share

    def _base(self) -> list[str]:
        """ssh, the options it always gets, and the run's configuration (the operator's, then
        the time limits: ``ssh_file``): also the key of the host's shared connection."""
        return ["ssh", *SSH_OPTIONS, "-F", SHARED.ssh_file(self.ssh_config), *self.options]

    def ssh_argv(self) -> list[str]:
        base = self._base()
        return [*base, *SHARED.options(base, self.host)] if self.share else base

    def connect_soon(self, gate: threading.Semaphore | None = None) -> None:
        """Start opening this host's shared connection (the first call waits for it)."""
        if self.share:
            SHARED.open_soon(self._base(), self.host, gate)

    def ready(self) -> None:
        """The shared connection is up, opened now if it is not (for ``ssh -O`` requests such
        as a forward); exit 1 naming the host when it cannot be."""
        if not self.share:
            return
        base = self._base()
        why = SHARED.wait(base, self.host) or SHARED.open_now(base, self.host)
        if why:
            raise self._cannot_connect(why)

    def agent(self, op: str, request: Mapping[str, object], *, stdin: BinaryIO | None = None, timeout: float | None = None) -> dict[str, Any]:
        why = SHARED.wait(self._base(), self.host) if self.share else ""
        if why and any(m in why for m in NEVER_CONNECTED):  # it never got in: the op was not started
            raise self._cannot_connect(why)
        return super().agent(op, request, stdin=stdin, timeout=timeout)

    def _cannot_connect(self, err: str) -> ReleaseError:
        return UnreachableError(
            f"cannot connect to SSH host {self.host}",
            detail=err,
            hint="check target.host, your ssh_config/target.ssh_config, keys/agent and known_hosts (batch mode: no prompts)",
        )

    def argv(self, op: str, request: Mapping[str, object]) -> list[str]:
        import shlex

        remote = shlex.join([self.python, *AGENT_FLAGS, "-c", agent_program()[0], op, json.dumps(request)])
        return [*self.ssh_argv(), "--", self.host, remote]

    def _no_answer(self, op: str, code: int, err: str) -> ReleaseError:
        if code == 255 and op in CHANGING_OPS and not any(m in err for m in NEVER_CONNECTED):
            return _unknown(op, self.label, "the SSH connection was lost", err)
        if code == 255:
            return self._cannot_connect(err)
        return super()._no_answer(op, code, err)


def for_config(cfg: Config) -> Transport:
    if cfg.is_local:
        return LocalTransport(cfg.python, cfg.op_timeout)
    if cfg.ssh_config:
        _check_ssh_config(cfg.ssh_config)
    return SshTransport(cfg.host, cfg.python, cfg.ssh_config, cfg.ssh_options, deadline=cfg.op_timeout)


def _check_ssh_config(path: str) -> None:
    """``target.ssh_config`` is a file only its owner (you or root) can write: ssh reads it
    through ``Include``, which holds it to the rule of ``~/.ssh/config``, and a ProxyCommand
    someone else wrote there would run as you."""
    import stat

    from .errors import ConfigError

    try:
        st = os.stat(path)
    except OSError:
        st = None
    if st is None or not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"target.ssh_config not found: {path}", hint="fix target.ssh_config")
    if st.st_uid not in (0, os.getuid()) or st.st_mode & 0o022:
        raise ConfigError(
            f"target.ssh_config {path} can be written by another user (mode {stat.S_IMODE(st.st_mode):04o}, owner uid {st.st_uid})",
            hint=f"chmod go-w {path}, owned by you or root: as OpenSSH requires of ~/.ssh/config",
        )
