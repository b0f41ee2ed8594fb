"""One transport interface, two implementations: this machine, or an SSH host.

Both run the stdlib-only target agent (``release/agent/``) with the target's
interpreter: a small boot program on the command line, the agent's code ahead of the call's
data on stdin, so the target needs nothing installed but Python. SSH is the system OpenSSH
client in batch mode: the user's ssh_config (or ``target.ssh_config``), agent, jump hosts
and known_hosts apply, read first, then this tool's time limits (``_Shared.ssh_file``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from .. import proc
from ..agent import jsonio
from ..agent import ops as agent_ops
from ..config import Config
from ..errors import BlockedError, OutcomeUnknownError, ReleaseError, UnreachableError, from_exit_code
from ..redact import redact
from .connection import NO_FORWARDS, SHARED, SSH_OPTIONS

if TYPE_CHECKING:  # subprocess and shlex are imported by the SSH paths that use them
    import threading

# the agent is stdlib only: isolated mode (no PYTHON* variables, no user site, no cwd on
# sys.path) and no site import, which also makes it start faster
AGENT_FLAGS = ("-I", "-S")
# what travels with every call (the boot program, the agent's code) is ``payload``'s


def agent_program() -> tuple[str, bytes]:
    """``payload.agent_program``, imported when a call needs a second interpreter (a local op
    forked from this process never does: no ``ast``/``zlib`` import on its path)."""
    from .payload import agent_program as program

    return program()


class Transport(Protocol):
    label: str
    same_machine: bool  # the target can read the controller's files in place
    lock_wait: float  # --lock-wait: seconds a locking op waits for a live holder

    def agent(self, op: str, request: Mapping[str, object], *, stdin: BinaryIO | None = None, timeout: float | None = None) -> dict[str, Any]: ...

    def argv(self, op: str, request: Mapping[str, object]) -> list[str]: ...


class _Base:
    label = ""
    same_machine = False

    lock_wait = 0.0  # --lock-wait: seconds an op that takes the target's lock waits for a live holder

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

# OpenSSH's words for why a connection failed, and the reason they name, most specific first
_SSH_REASONS = (
    ("REMOTE HOST IDENTIFICATION HAS CHANGED", "host key changed"),
    ("Host key verification failed", "host key not known or not matching"),
    ("Permission denied", "authentication failed"),
    ("Too many authentication failures", "authentication failed"),
    ("Connection refused", "connection refused"),
    ("timed out", "timeout"),
    ("No route to host", "no route to host"),
    ("Could not resolve hostname", "name not resolved"),
    ("banner exchange", "no SSH server answered"),
    ("Bad configuration option", "ssh configuration error"),
    ("Bad owner or permissions", "ssh configuration error"),
)


def ssh_reason(err: str) -> str:
    """Why OpenSSH could not connect, in one line: the reason, then ssh's own line that says so."""
    lines = [line.strip() for line in err.splitlines() if line.strip() and not line.lstrip().startswith(("@", "Warning: Permanently added"))]
    for needle, reason in _SSH_REASONS:
        for line in lines:
            if needle in line:
                return f"{reason} ({line[:200]})"
    return lines[-1][:200] if lines else "ssh gave no reason"


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


class SshTransport(_Base):
    def __init__(
        self, host: str, python: str, ssh_config: str = "", options: tuple[str, ...] = (), share: bool = True, deadline: float = 3600.0, label: str = ""
    ) -> None:
        super().__init__(python, deadline)
        self.host = host  # the ssh destination (an inventory's ansible_host, as Ansible hands it to ssh)
        self.label = label or host  # the host's name in messages (its inventory name)
        self.ssh_config = ssh_config
        self.options = options
        self.share = share

    def _base(self) -> list[str]:
        """ssh, the options it always gets, and the run's configuration (the operator's, then
        the time limits: ``ssh_file``): also the key of the host's shared connection."""
        return ["ssh", *SSH_OPTIONS, "-F", SHARED.ssh_file(self.ssh_config), *self.options]

    def ssh_argv(self, *, forward: bool = False) -> list[str]:
        """ssh's command line for this host, on its shared connection; ``forward``: for an
        ``-O forward`` request (the one call that keeps the forward it asks for)."""
        base = self._base()
        argv = [*base, *(() if forward else NO_FORWARDS)]
        return [*argv, *SHARED.options(base, self.host)] if self.share else argv

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
        where = self.host if self.label == self.host else f"{self.label} ({self.host})"
        return UnreachableError(
            f"cannot connect to SSH host {where}: {ssh_reason(err)}",
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
    t: _Base
    if cfg.is_local:
        t = LocalTransport(cfg.python, cfg.op_timeout)
    else:
        if cfg.ssh_config:
            _check_ssh_config(cfg.ssh_config)
        t = SshTransport(cfg.connect_to or cfg.host, cfg.python, cfg.ssh_config, cfg.ssh_options, deadline=cfg.op_timeout, label=cfg.host)
    t.lock_wait = cfg.lock_wait
    return t


def _check_ssh_config(path: str) -> None:
    """``target.ssh_config`` is a file only its owner (you or root) can write: ssh reads it
    through ``Include``, which holds it to the rule of ``~/.ssh/config``, and a ProxyCommand
    someone else wrote there would run as you."""
    import stat

    from ..errors import ConfigError

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
