"""The one subprocess helper: logs the (redacted) command, attaches output to errors."""

from __future__ import annotations

import errno
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

from .errors import ReleaseError
from .redact import redact

if TYPE_CHECKING:
    import logging
    import subprocess

PIPE = -1  # subprocess.PIPE: subprocess is imported when a command runs, not on every start


class _Log:
    """The ``release`` logger of ``logging``, imported on first use: a run without ``-v``
    logs nothing at debug level and does not pay for importing logging on every start."""

    verbose = False

    def debug(self, msg: str, *args: object) -> None:
        if self.verbose:
            _logger().debug(msg, *args)

    def warning(self, msg: str, *args: object) -> None:
        _logger().warning(msg, *args)


def _logger() -> logging.Logger:
    import logging

    return logging.getLogger("release")


def log_commands() -> None:
    """``-v``: every command run is logged (redacted) on stderr."""
    import logging

    logging.basicConfig(level=logging.DEBUG, format="%(message)s", stream=sys.stderr)
    log.verbose = True


log = _Log()


class Completed(NamedTuple):
    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def out(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    @property
    def err(self) -> str:
        return self.stderr.decode("utf-8", "replace")


# what a child process may inherit: never a DSN, password or token held by this process
ENV_ALLOW = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TERM",
        "TMPDIR",
        "SSH_AUTH_SOCK",
        "SOURCE_DATE_EPOCH",
        "NO_COLOR",
        "GIT_SSH",
        "GIT_SSH_COMMAND",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    }
)
ENV_ALLOW_PREFIXES = ("LC_", "PIP_", "UV_", "RELEASE_TEST_", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


def single_threaded() -> bool:
    """This process runs one thread: the kernel's count (threads a C library started
    included), else Python's own. (A fork of it, or an exit without joining, is safe.)"""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        import threading

        return threading.active_count() == 1


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The allowlisted part of this process's environment, plus ``extra``."""
    from .source.indexes import without_credentials

    env = {k: v for k, v in os.environ.items() if k in ENV_ALLOW or k.startswith(ENV_ALLOW_PREFIXES)}
    for k in [k for k in env if k not in ENV_ALLOW]:
        kept = without_credentials(k, env[k])  # an index credential stays here: only the resolver and the downloader get it (``indexes``)
        if kept is None:
            env.pop(k)
        else:
            env[k] = kept
    env.update(extra or {})
    return env


def show(argv: Sequence[str]) -> str:
    """The command as a (redacted) shell line; very long arguments are abridged."""
    import shlex

    return redact(shlex.join(a if len(a) <= 300 else f"{a[:60]}...({len(a)} chars)" for a in map(str, argv)))


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    stdin: BinaryIO | None = None,
    prefix: bytes = b"",
    check: bool = True,
    timeout: float | None = None,
    error: type[ReleaseError] = ReleaseError,
    what: str = "",
    hint: str = "",
) -> Completed:
    """Run a command to completion, capturing its output.

    On a non-zero exit (with ``check``) raise ``error`` whose message names the command
    (or ``what``) and whose detail is the command's stderr (redacted). With ``prefix`` the
    command reads those bytes first on its stdin, then ``stdin`` (a file, spliced in by the
    kernel), then end of file.
    """
    import subprocess

    args = tuple(str(a) for a in argv)
    log.debug("run: %s", show(args))
    full_env = clean_env(env)
    try:
        if prefix:
            cp = _run_fed(args, cwd, full_env, prefix, stdin, timeout)
        else:
            cp = subprocess.run(
                args,
                cwd=cwd,
                env=full_env,
                input=input,
                stdin=None if input is not None else (stdin if stdin is not None else subprocess.DEVNULL),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                timeout=timeout,
                check=False,
            )
    except FileNotFoundError as exc:
        raise error(f"{what or args[0]}: command not found: {args[0]}", hint=hint or "install it or fix PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise TimedOut(f"{what or show(args)}: no end within {timeout:g} s: stopped", hint=hint) from exc
    result = Completed(args, cp.returncode, cp.stdout, cp.stderr)
    if check and cp.returncode != 0:
        detail = failure_detail(result)
        raise error(
            f"{what or show(args)} failed with exit code {cp.returncode}",
            hint=hint,
            detail=detail,
        )
    return result


def failure_detail(cp: Completed, room: int = 4000) -> str:
    """The end of what a failed command printed: its stderr, after the end of its stdout when
    that is text (a build backend's own error goes to build's stdout, its summary to stderr)."""
    err, out = cp.err.strip(), cp.out.strip()
    if not err or b"\0" in cp.stdout:
        return (err or out)[-room:]
    if not out:
        return err[-room:]
    err = err[-room // 2 :]
    return out[-(room - len(err)) :] + "\n" + err


def _run_fed(
    args: tuple[str, ...], cwd: str | Path | None, env: dict[str, str], prefix: bytes, then: BinaryIO | None, timeout: float | None
) -> subprocess.CompletedProcess[bytes]:
    """``subprocess.run`` whose stdin is a pipe fed by a thread: ``prefix``, then ``then``."""
    import subprocess

    from .agent.fsutil import widen_pipe

    r, w = os.pipe()
    try:
        widen_pipe(w)
        child = subprocess.Popen(args, cwd=cwd, env=env, stdin=r, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except BaseException:
        os.close(w)
        raise
    finally:
        os.close(r)  # the child holds the only reader: when it exits, the feeder's writes fail
    feeder = threading.Thread(target=_feed, args=(w, prefix, then), daemon=True)
    feeder.start()
    assert child.stdout is not None and child.stderr is not None
    with _LIVE_LOCK:
        _LIVE.add(child)
    try:
        out, err, late = read_pipes(child.stdout.fileno(), child.stderr.fileno(), timeout, args[0])
        if late:
            raise subprocess.TimeoutExpired(args, timeout or 0)
        child.wait(timeout=timeout)  # its output ended; a command that lingers after that is bounded too
    except BaseException:
        child.kill()
        child.wait()
        raise
    finally:
        with _LIVE_LOCK:
            _LIVE.discard(child)
        for pipe in (child.stdout, child.stderr):
            if pipe is not None:
                pipe.close()
        feeder.join(timeout=10)  # a reader that outlived the command and never reads: left to it
    return subprocess.CompletedProcess(args, child.returncode, out, err)


# what a fed command (the agent, local or over SSH) may print, per stream: its answer is one
# line and its progress a few; a target that streams without end cannot fill this memory
MAX_OUTPUT = 64 << 20


def read_pipes(out_fd: int, err_fd: int, timeout: float | None, name: str) -> tuple[bytes, bytes, bool]:
    """Both pipes read as the data comes, to their end or until ``timeout`` (then the third
    value is True and the caller stops the writer); each kept up to ``MAX_OUTPUT``, more is
    ``OutputTooLarge``. The one reader of every agent's answer, forked or run."""
    import selectors
    import time

    deadline = None if timeout is None else time.monotonic() + timeout
    kept = {out_fd: bytearray(), err_fd: bytearray()}
    stop = _stop_fd()
    with selectors.DefaultSelector() as sel:
        for fd in kept:
            sel.register(fd, selectors.EVENT_READ)
        sel.register(stop, selectors.EVENT_READ)
        while len(sel.get_map()) > 1:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return bytes(kept[out_fd]), bytes(kept[err_fd]), True
            for key, _ in sel.select(left):
                if key.fd == stop:
                    raise Stopped(f"{name} was stopped before it answered (the run was interrupted)")
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    sel.unregister(key.fd)
                    continue
                kept[key.fd] += chunk
                if len(kept[key.fd]) > MAX_OUTPUT:
                    raise OutputTooLarge(f"{name} printed more than {MAX_OUTPUT >> 20} MiB: stopped, the rest was not read")
    return bytes(kept[out_fd]), bytes(kept[err_fd]), False


class TimedOut(ReleaseError):
    """A command ran past its deadline: it was killed, its outcome not read."""


_LIVE: set[Any] = set()  # the fed commands running now (agents, local or over SSH)
_LIVE_LOCK = threading.Lock()


_STOP: list[int] = []  # a pipe whose read end every reader of a fed command watches: written once, by stop_children


def _stop_fd() -> int:
    with _LIVE_LOCK:
        if not _STOP:
            _STOP.extend(os.pipe())
        return _STOP[0]


class Stopped(ReleaseError):
    """A fed command was stopped by ``stop_children`` before it answered."""


def stop_children() -> int:
    """Stop every fed command still running (an interrupted fleet's hosts in flight): their
    readers return at once (an ssh client of a shared connection passed its pipes to the
    master, so killing it alone ends no read) and the commands are killed; an op that
    changes a target becomes an unknown outcome."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    _stop_fd()
    os.write(_STOP[1], b"x")
    for child in live:
        try:
            child.kill()
        except OSError:
            pass
    return len(live)


class OutputTooLarge(ReleaseError):
    """A fed command printed more than ``MAX_OUTPUT``: it was killed, its outcome not read."""


def _feed(fd: int, prefix: bytes, then: BinaryIO | None) -> None:
    """Write ``prefix`` then the file ``then`` into the pipe ``fd``, and close it. A reader
    that went away ends the feed quietly: the command's own exit status tells what happened."""
    from .agent.fsutil import write_all

    try:
        write_all(fd, prefix)
        if then is not None:
            src = then.fileno()
            try:
                while os.splice(src, fd, 1 << 20):
                    pass
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.ENOSYS):  # no splice from this file: copy it
                    raise
                while chunk := os.read(src, 1 << 20):
                    write_all(fd, chunk)
    except OSError:
        pass
    finally:
        os.close(fd)


def popen(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: int | None = None,
    stdout: int | None = PIPE,
    stderr: int | None = PIPE,
) -> subprocess.Popen[bytes]:
    """Start a streaming command (for pipelines that must not buffer whole outputs)."""
    import subprocess

    args = [str(a) for a in argv]
    log.debug("start: %s", show(args))
    full_env = clean_env(env)
    return subprocess.Popen(args, cwd=cwd, env=full_env, stdin=stdin, stdout=stdout, stderr=stderr)
