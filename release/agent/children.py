"""Child processes of the agent, bounded: a command runs with a hard time limit and its
output in a private file (a descendant that keeps the output open cannot hold it), and
what it started can be swept (``kill_descendants``) once it is over."""

from __future__ import annotations

import os
import time

ENV_ALLOW = ("PATH", "LANG", "LANGUAGE", "TZ", "TERM", "USER", "LOGNAME", "HOME")


def clean_env() -> dict[str, str]:
    """The agent's variables a child may see: an allowlist (never a DSN, password or token)."""
    env = {k: v for k, v in os.environ.items() if k in ENV_ALLOW or k.startswith("LC_")}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    return env


def expand(arg: str, python: str, target: str) -> str:
    """A configured argument with its placeholders filled: ``{python}`` (the release's
    interpreter) and ``{target}`` (the release folder)."""
    return arg.replace("{python}", python).replace("{target}", target)


def become_subreaper() -> bool:
    """Make orphaned descendants of check commands (even new sessions) our children (Linux)."""
    import ctypes

    try:
        return bool(ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def _descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (from /proc), children before their parent's siblings."""
    parents: dict[int, list[int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for n in names:
        if not n.isdigit():
            continue
        try:
            with open(f"/proc/{n}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(n))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def kill_descendants() -> int:
    """SIGKILL every process below this agent and reap them; return how many there were."""
    import signal

    me = os.getpid()
    killed = 0
    for _attempt in range(5):
        found = _descendants(me)
        if not found:
            break
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        _reap()
        time.sleep(0.01)
    return killed


def _reap() -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


# A changing op ignores SIGHUP (a lost connection must not cut it short), and an ignored
# signal stays ignored across exec: what a restart starts (the application) would never
# hear a HUP. This runs the command with the default disposition back (``-S``: no site, a
# few milliseconds).
_DEFAULT_SIGNALS = (
    "import os, signal, sys\n"
    "signal.signal(signal.SIGHUP, signal.SIG_DFL)\n"
    "try:\n"
    "    os.execvp(sys.argv[1], sys.argv[1:])\n"
    "except OSError as exc:\n"
    "    sys.stderr.write('cannot run %s: %s\\n' % (sys.argv[1], exc.strerror))\n"
    "    os._exit(127)\n"
)


def with_default_signals(argv: list[str]) -> list[str]:
    import signal
    import sys

    if signal.getsignal(signal.SIGHUP) != signal.SIG_IGN:
        return argv
    return [sys.executable, "-S", "-c", _DEFAULT_SIGNALS, *argv]


def run_bounded(argv: list[str], cwd: str, env: dict[str, str], timeout: float, *, sweep: bool = True, tail: int = 64 * 1024) -> tuple[int | None, str, float]:
    """Run a command with a hard bound. ``sweep`` (a check): when it ends or times out, every
    process it started (its own session or not) is killed. Without (a restart, whose job is
    to leave the application running): only a command that timed out is killed, with its
    process group. Output goes to a private file, so a descendant that keeps it open cannot
    hold the command. Returns (exit code or None on timeout, the last ``tail`` bytes of the
    output, seconds it ran)."""
    import subprocess
    import tempfile
    import threading

    t0 = time.monotonic()
    with tempfile.TemporaryFile(dir=env.get("TMPDIR")) as out:
        p = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        # waited for in a thread blocked in waitpid: the end is seen at once (a timed
        # ``Popen.wait`` polls, up to 50 ms late)
        waiter = threading.Thread(target=p.wait, daemon=True)
        waiter.start()
        waiter.join(max(timeout, 0.1))
        code: int | None = None if waiter.is_alive() else p.returncode
        if sweep or code is None:
            try:
                os.killpg(p.pid, 9)
            except (ProcessLookupError, PermissionError):
                pass
        if sweep:
            kill_descendants()
        p.wait()
        size = out.seek(0, os.SEEK_END)
        out.seek(max(0, size - tail))
        text = out.read().decode("utf-8", "replace")
    return code, text, time.monotonic() - t0
