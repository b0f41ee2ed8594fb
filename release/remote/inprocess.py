"""The agent without a second interpreter start, for ops on this machine.

When the local target's interpreter is the controller's own (the same binary), an op that
does not run the app's code runs in a forked child of the CLI: the same
agent code, already importable here, with what the separate process gives kept: a clean
(allowlisted) environment, stdin from /dev/null, nothing imported from the target's
environment, its answer and log through pipes, and the same protocol (one JSON answer
line, exit code). A child that dies without an answer is treated exactly as an agent
process that did: for an op that changes the target the outcome is unknown. The child
ends with ``os._exit``: none of the CLI's exit handlers or buffered output runs twice.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Mapping

from .. import proc
from ..agent import ops as agent_ops

# ops that are the agent's own work: not the checks smoke runs with the target's
# interpreter, nor facts about the interpreter. A local deploy reads the bundle where it
# lies; the environment it may build is the one this very binary would build as its own
# process (the same version, tags and base interpreter; pypa installer from this install)
NEUTRAL_OPS = agent_ops.FORKABLE  # the agent's op table says which ops may run in a forked child


def own_interpreter(python: str) -> bool:
    """``python`` (a name on PATH or a path) is the very binary running this process."""
    if os.sep in python:  # a path: no PATH lookup (shutil is not imported for it)
        found: str | None = python if os.access(python, os.X_OK) and not os.path.isdir(python) else None
    else:
        import shutil

        found = shutil.which(python)
    if not found:
        return False
    mine = {os.path.realpath(sys.executable), os.path.realpath(getattr(sys, "_base_executable", sys.executable))}
    return os.path.realpath(found) in mine


def usable(python: str, op: str) -> bool:
    # fork only a single-threaded process (a thread holding a lock at the fork would hold it forever in the child)
    return op in NEUTRAL_OPS and hasattr(os, "fork") and proc.single_threaded() and own_interpreter(python)


def run(op: str, request: Mapping[str, object], timeout: float | None = None) -> proc.Completed:
    """Run ``op`` in a forked child; its exit code, stdout and stderr as a process's."""
    payload = json.dumps(request)
    env = proc.clean_env()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        _child(op, payload, env, (out_r, err_r), out_w, err_w)
    os.close(out_w)
    os.close(err_w)
    try:
        out, err, killed = proc.read_pipes(out_r, err_r, timeout, "the agent's forked child")
    except (proc.OutputTooLarge, proc.Stopped):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(out_r)
        os.close(err_r)
    if killed:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if killed:
        raise proc.TimedOut(f"agent op {op} on localhost: no answer within {timeout}s: stopped")
    return proc.Completed(("<agent in a forked child>", op), code, out, err)


def _child(op: str, payload: str, env: dict[str, str], parent_ends: tuple[int, int], out_w: int, err_w: int) -> None:
    code = 1
    try:
        for fd in parent_ends:
            os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        for fd in (null, out_w, err_w):
            os.close(fd)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.environ.clear()
        os.environ.update(env)
        # fresh streams on the new descriptors: the CLI's (and their buffers) are not touched
        sys.stdin = open(0, closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", closefd=False, buffering=1)  # noqa: SIM115
        sys.stderr = open(2, "w", closefd=False, buffering=1)  # noqa: SIM115
        from ..agent.ops import main

        code = main(["agent", op, payload])
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException as exc:  # whatever happens, the child exits here
        try:
            os.write(2, f"agent child: {type(exc).__name__}: {exc}\n".encode())
        except OSError:
            pass
    finally:
        os._exit(code)
